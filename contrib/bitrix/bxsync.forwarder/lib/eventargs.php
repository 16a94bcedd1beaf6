<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Event;

/**
 * Reads a handler's arguments whichever way the kernel delivered them.
 *
 * EventManager::send() passes a handler registered with registerEventHandler() (VERSION 2) the Event object, and one
 * registered with registerEventHandlerCompatible() (VERSION 1) the event's parameter values in order; the old
 * ExecuteModuleEventEx(), which crm uses for OnAfterCrmDeal*, passes its parameters in order whatever the VERSION
 * (kernel copies: https://github.com/avshatalov48/bitrix-core-business/blob/master/modules/main/lib/eventmanager.php
 * sendToEventHandler(); modules/main/classes/general/module.php ExecuteModuleEventEx()). Accepting both keeps a
 * handler working if a kernel update moves an event from one dispatcher to the other.
 */
final class EventArgs
{
    /**
     * The named parameter of a D7 event (Event object), or the positional one of a compatible call.
     *
     * @param list<mixed> $args
     * @return mixed
     */
    public static function param(array $args, string $name, int $position)
    {
        $first = $args[0] ?? null;
        if ($first instanceof Event) {
            return $first->getParameter($name);
        }

        return $args[$position] ?? null;
    }

    /**
     * The first parameter, by position or, from an Event object, its ID parameter or else its first one.
     *
     * @param list<mixed> $args
     * @return mixed
     */
    public static function first(array $args)
    {
        $first = $args[0] ?? null;
        if ($first instanceof Event) {
            $parameters = $first->getParameters();

            return $first->getParameter('ID') ?? (reset($parameters) ?: null);
        }

        return $first;
    }

    /**
     * The id of an entity object (sale's Order, Payment: getId()), a fields array (['ID' => …]) or a bare id.
     *
     * @param mixed $value
     */
    public static function id($value): int
    {
        if (is_object($value) && method_exists($value, 'getId')) {
            $value = $value->getId();
        } elseif (is_array($value)) {
            $value = $value['ID'] ?? ($value['id'] ?? null);
        }
        if (is_int($value)) {
            return $value;
        }
        if (is_string($value) && ctype_digit($value)) {
            return (int) $value;
        }

        return 0;
    }
}
