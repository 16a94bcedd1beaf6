<?php

// One PHP process playing one or more hits on a stub kernel with the forwarder module under BXSYNC_MODULES_ROOT.
// argv[1] is a JSON list of steps (see tests/forwarder/test_forwarder.py); the report is JSON on stdout.
// Each step is timed: what a customer or manager waits for is the event steps, what runs after the response is
// the end_hit step.

declare(strict_types=1);

use Bitrix\Main\Application;
use Bitrix\Main\Config\Option;
use Bitrix\Main\Event;
use Bitrix\Main\Loader;
use Bitrix\Sale\Order;
use Bitrix\Sale\Payment;

error_reporting(E_ALL);
set_error_handler(static function (int $severity, string $message, string $file, int $line): bool {
    // A notice or warning from the module is a bug: fail the hit loudly.
    if (!(error_reporting() & $severity)) {
        return false;
    }
    throw new ErrorException($message, 0, $severity, $file, $line);
});

define('LANGUAGE_ID', getenv('BXSYNC_STUB_LANGUAGE') ?: 'en');
require __DIR__ . '/main.php';
require __DIR__ . '/sale.php';
require __DIR__ . '/orm.php';

const MODULE_ID = 'bxsync.forwarder';

function fire_crm(string $event, array $params): void
{
    // How CCrmDeal fires its events: the old API, fields passed by reference.
    foreach (GetModuleEvents('crm', $event, true) as $handler) {
        ExecuteModuleEventEx($handler, $params);
    }
}

function module_installer(): bxsync_forwarder
{
    require_once Loader::modulesRoot() . '/' . MODULE_ID . '/install/index.php';

    return new bxsync_forwarder();
}

$steps = json_decode($argv[1] ?? '[]', true, 512, JSON_THROW_ON_ERROR);
$report = [];
foreach ($steps as $step) {
    $started = hrtime(true);
    $extra = [];
    switch ($step['do']) {
        case 'install':
            $extra['installed'] = module_installer()->DoInstall();
            break;
        case 'uninstall':
            $extra['uninstalled'] = module_installer()->DoUninstall();
            break;
        case 'configure':
            foreach ($step['options'] as $name => $value) {
                Option::set(MODULE_ID, $name, (string) $value);
            }
            break;
        case 'save_order':
            $order = new Order((int) $step['order']);
            (new Event('sale', 'OnSaleOrderSaved', ['ENTITY' => $order, 'VALUES' => [], 'IS_NEW' => false]))->send();
            break;
        case 'save_broken_order':
            // An order object that fails when read: the handler must swallow it, not the customer's checkout.
            $broken = new class () {
                public function getId(): int
                {
                    throw new RuntimeException('order storage unavailable');
                }
            };
            (new Event('sale', 'OnSaleOrderSaved', ['ENTITY' => $broken, 'VALUES' => [], 'IS_NEW' => false]))->send();
            break;
        case 'save_payment':
            $payment = new Payment((int) $step['payment'], (bool) ($step['paid'] ?? true));
            (new Event('sale', 'OnSalePaymentEntitySaved', ['ENTITY' => $payment, 'VALUES' => ['PAID' => 'N']]))->send();
            break;
        case 'pay_order':
            $payments = array_map(static function (int $id): Payment {
                return new Payment($id);
            }, $step['payments']);
            $order = new Order((int) $step['order'], ['PAYED' => 'Y'], $payments);
            (new Event('sale', 'OnSaleOrderPaid', ['ENTITY' => $order]))->send();
            break;
        case 'delete_order':
            // OrderBase::delete(): the order is saved (marked deleted), then OnSaleOrderDeleted with ENTITY and VALUE.
            $order = new Order((int) $step['order']);
            (new Event('sale', 'OnSaleOrderSaved', ['ENTITY' => $order, 'VALUES' => [], 'IS_NEW' => false]))->send();
            (new Event('sale', 'OnSaleOrderDeleted', ['ENTITY' => $order, 'VALUE' => (bool) ($step['succeeded'] ?? true)]))->send();
            break;
        case 'add_deal':
            $fields = ['ID' => (int) $step['deal'], 'TITLE' => 'Order ' . ($step['order'] ?? ''), 'STAGE_ID' => 'NEW'];
            fire_crm('OnAfterCrmDealAdd', [&$fields]);
            break;
        case 'update_deal':
            $fields = ['ID' => (string) $step['deal'], 'STAGE_ID' => $step['stage'] ?? 'PREPARATION'];
            fire_crm('OnAfterCrmDealUpdate', [&$fields]);
            break;
        case 'delete_deal':
            fire_crm('OnAfterCrmDealDelete', [(int) $step['deal']]);
            break;
        case 'end_hit':
            Application::getInstance()->terminate();
            break;
        case 'run_agents':
            // What the kernel does on a later hit (or cron_events.php): the due agents run.
            CAgent::RunAll();
            break;
        case 'settings':
            Loader::includeModule(MODULE_ID);
            $extra['connect_timeout'] = Bxsync\Forwarder\Settings::connectTimeout();
            $extra['total_timeout'] = Bxsync\Forwarder\Settings::totalTimeout();
            break;
        case 'check':
            Loader::includeModule(MODULE_ID);
            $extra['check'] = Bxsync\Forwarder\ConnectionCheck::run((string) $step['side']);
            break;
        case 'options_page':
            require_once __DIR__ . '/admin.php';
            $_SERVER['REQUEST_METHOD'] = isset($step['post']) ? 'POST' : 'GET';
            $_POST = isset($step['post']) ? $step['post'] + ['sessid' => 'stub-session'] : [];
            ob_start();
            (static function (): void {
                global $APPLICATION, $USER;
                include Loader::modulesRoot() . '/' . MODULE_ID . '/options.php';
            })();
            $extra['html'] = ob_get_clean();
            break;
        default:
            throw new InvalidArgumentException('unknown step ' . $step['do']);
    }
    $report[] = ['do' => $step['do'], 'seconds' => (hrtime(true) - $started) / 1e9] + $extra;
}

echo json_encode(['steps' => $report], JSON_UNESCAPED_UNICODE), "\n";
