<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\EventManager;
use Bitrix\Main\ModuleManager;

/**
 * Which kernel events the module listens to, and their registration in b_module_to_module. Used by
 * install/index.php (so it must load without the module's autoloader) and by the options page.
 *
 * sale's events are D7 events sent with Event::send(): registered with registerEventHandler (VERSION 2, the handler
 * gets the Event). crm's OnAfterCrmDeal* go through ExecuteModuleEventEx, which passes the old positional
 * parameters: registered with registerEventHandlerCompatible (VERSION 1), which also gets positional parameters should
 * crm ever send them through EventManager::send() (kernel copy:
 * https://github.com/avshatalov48/bitrix-core-business/blob/master/modules/main/lib/eventmanager.php).
 */
final class HandlerRegistry
{
    /** @return list<array{module: string, event: string, class: string, method: string, compatible: bool}> */
    public static function all(): array
    {
        return [
            self::row('sale', 'OnSaleOrderSaved', SaleHandlers::class, 'onOrderSaved', false),
            self::row('sale', 'OnSalePaymentEntitySaved', SaleHandlers::class, 'onPaymentSaved', false),
            self::row('sale', 'OnSaleOrderPaid', SaleHandlers::class, 'onOrderPaid', false),
            self::row('sale', 'OnSaleOrderDeleted', SaleHandlers::class, 'onOrderDeleted', false),
            self::row('crm', 'OnAfterCrmDealAdd', CrmHandlers::class, 'onDealAdd', true),
            self::row('crm', 'OnAfterCrmDealUpdate', CrmHandlers::class, 'onDealUpdate', true),
            self::row('crm', 'OnAfterCrmDealDelete', CrmHandlers::class, 'onDealDelete', true),
        ];
    }

    /** @return list<string> the source modules (sale, crm) this module can listen to */
    public static function sourceModules(): array
    {
        return array_values(array_unique(array_column(self::all(), 'module')));
    }

    /**
     * Registers the handlers of every source module installed now and returns those modules. Safe to repeat
     * (after installing crm or sale later): each handler is removed before it is added, so no kernel version
     * ends up calling it twice.
     *
     * @return list<string>
     */
    public static function registerForInstalledModules(): array
    {
        $manager = EventManager::getInstance();
        $wired = [];
        foreach (self::all() as $handler) {
            if (!ModuleManager::isModuleInstalled($handler['module'])) {
                continue;
            }
            $manager->unRegisterEventHandler(
                $handler['module'],
                $handler['event'],
                Settings::MODULE_ID,
                $handler['class'],
                $handler['method']
            );
            $register = $handler['compatible'] ? 'registerEventHandlerCompatible' : 'registerEventHandler';
            $manager->{$register}(
                $handler['module'],
                $handler['event'],
                Settings::MODULE_ID,
                $handler['class'],
                $handler['method']
            );
            $wired[$handler['module']] = true;
        }

        return array_keys($wired);
    }

    /** Removes every handler of this module, for modules installed or not. */
    public static function unregisterAll(): void
    {
        $manager = EventManager::getInstance();
        foreach (self::all() as $handler) {
            $manager->unRegisterEventHandler(
                $handler['module'],
                $handler['event'],
                Settings::MODULE_ID,
                $handler['class'],
                $handler['method']
            );
        }
    }

    /**
     * For the options page: per source module, whether it is installed and whether all its handlers are in place.
     *
     * @return array<string, array{installed: bool, registered: bool}>
     */
    public static function status(): array
    {
        $manager = EventManager::getInstance();
        $status = [];
        foreach (self::all() as $handler) {
            $module = $handler['module'];
            $found = false;
            foreach ($manager->findEventHandlers($module, $handler['event']) as $row) {
                if (
                    ($row['TO_MODULE_ID'] ?? '') === Settings::MODULE_ID
                    && ltrim((string) ($row['TO_CLASS'] ?? ''), '\\') === $handler['class']
                    && ($row['TO_METHOD'] ?? '') === $handler['method']
                ) {
                    $found = true;
                }
            }
            $status[$module] = [
                'installed' => ModuleManager::isModuleInstalled($module),
                'registered' => ($status[$module]['registered'] ?? true) && $found,
            ];
        }

        return $status;
    }

    /** @return array{module: string, event: string, class: string, method: string, compatible: bool} */
    private static function row(string $module, string $event, string $class, string $method, bool $compatible): array
    {
        return [
            'module' => $module,
            'event' => $event,
            'class' => $class,
            'method' => $method,
            'compatible' => $compatible,
        ];
    }
}
