<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * The on-premises CRM's deal events (module crm), forwarded to bxsync's POST /api/bitrix/crm/ under the names of
 * Bitrix24's outgoing webhooks. CCrmDeal::Add/Update/Delete fire them the old way (ExecuteModuleEventEx;
 * https://dev.1c-bitrix.ru/api_help/crm/crm_events.php): OnAfterCrmDealAdd and OnAfterCrmDealUpdate with the deal's
 * fields array by reference, ID set (https://hmarketing.ru/blog/bitrix24/sobytiya-v-sdelkakh), OnAfterCrmDealDelete
 * with the bare id (Bitrix's own booking module declares its handler `onDealDelete(int $dealId)`). No official page
 * lists these parameters, so the id is taken from whichever shape arrives (EventArgs::id).
 *
 * These run inside a manager's save (or a robot's): they only queue, and never throw.
 */
final class CrmHandlers
{
    public static function onDealAdd(...$args): void
    {
        self::queue('ONCRMDEALADD', 'OnAfterCrmDealAdd', $args);
    }

    /**
     * Any edit of a deal, a stage move within its pipeline included (a move to another pipeline fires only the
     * REST event ONCRMDEALMOVETOCATEGORY, which has no kernel counterpart here; bxsync's reconciliation follows
     * pipeline moves).
     */
    public static function onDealUpdate(...$args): void
    {
        self::queue('ONCRMDEALUPDATE', 'OnAfterCrmDealUpdate', $args);
    }

    public static function onDealDelete(...$args): void
    {
        self::queue('ONCRMDEALDELETE', 'OnAfterCrmDealDelete', $args);
    }

    /** @param list<mixed> $args */
    private static function queue(string $event, string $kernelEvent, array $args): void
    {
        try {
            if (!Settings::hasToken(Settings::SIDE_CRM)) {
                return;
            }
            Outbox::add(Settings::SIDE_CRM, $event, EventArgs::id(EventArgs::first($args)));
        } catch (\Throwable $e) {
            Log::warning($kernelEvent . ' not forwarded: ' . get_class($e) . ': ' . $e->getMessage());
        }
    }
}
