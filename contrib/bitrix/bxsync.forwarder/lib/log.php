<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * Warnings an administrator can find: the kernel's event log (Settings → Tools → Event log / Настройки →
 * Инструменты → Журнал событий), filtered by type BXSYNC_FORWARDER. CEventLog::Add:
 * https://dev.1c-bitrix.ru/api_help/main/reference/ceventlog/add.php
 * Callers never pass a token or a request body here.
 */
final class Log
{
    public const AUDIT_TYPE = 'BXSYNC_FORWARDER';

    public static function warning(string $message, string $itemId = ''): void
    {
        try {
            if (class_exists('CEventLog')) {
                \CEventLog::Add([
                    'SEVERITY' => 'WARNING',
                    'AUDIT_TYPE_ID' => self::AUDIT_TYPE,
                    'MODULE_ID' => Settings::MODULE_ID,
                    'ITEM_ID' => $itemId,
                    'DESCRIPTION' => $message,
                ]);

                return;
            }
        } catch (\Throwable $e) {
            // The event log is a database table; if it fails too, PHP's error log still gets the line.
        }
        error_log('bxsync.forwarder: ' . $message);
    }
}
