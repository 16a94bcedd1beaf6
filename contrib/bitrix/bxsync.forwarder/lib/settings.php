<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Config\Option;

/**
 * What the options page stores: where bxsync is, the application token of each side, and how long one POST
 * may take. Stored with Option (b_option), never in the repository.
 * Option::get/set/delete: https://dev.1c-bitrix.ru/api_d7/bitrix/main/config/option/index.php
 */
final class Settings
{
    public const MODULE_ID = 'bxsync.forwarder';

    /** The shop ("1C-Bitrix: Site Management", module sale): bxsync's POST /api/bitrix/cms/. */
    public const SIDE_SHOP = 'cms';
    /** The CRM (on-premises Bitrix24, module crm): bxsync's POST /api/bitrix/crm/. */
    public const SIDE_CRM = 'crm';

    public const DEFAULT_CONNECT_TIMEOUT = 1.0;
    public const DEFAULT_TOTAL_TIMEOUT = 2.0;
    /** A checkout must never wait on bxsync for long, whatever someone types into the options page. */
    public const MAX_TIMEOUT = 10.0;
    public const MIN_TIMEOUT = 0.1;
    /** Events the outbox keeps while bxsync is away (a day of a busy shop); the oldest go first when it is full. */
    public const DEFAULT_OUTBOX_MAX = 10000;

    public static function baseUrl(): string
    {
        return trim((string) Option::get(self::MODULE_ID, 'base_url', ''));
    }

    /** Whether an http:// bxsync address was allowed on purpose (a test bench, a private network). */
    public static function allowsHttp(): bool
    {
        return Option::get(self::MODULE_ID, 'allow_http', '') === 'Y';
    }

    /**
     * Why nothing can be sent now, in words for the event log ('' when it can): no address, or an http:// address
     * that was not allowed (the application token would cross the network in clear).
     */
    public static function sendingProblem(): string
    {
        $base = self::baseUrl();
        if ($base === '') {
            return 'the bxsync URL is not set on the bxsync forwarder settings page';
        }
        if (self::isPlainHttp($base) && !self::allowsHttp()) {
            return 'the bxsync URL starts with http://, which sends the application token unencrypted; use https://'
                . ' or tick "allow http://" on the bxsync forwarder settings page';
        }

        return '';
    }

    /** The outbox's bound (Option outbox_max, not on the page; at least 1). */
    public static function outboxMax(): int
    {
        $raw = trim((string) Option::get(self::MODULE_ID, 'outbox_max', ''));

        return is_numeric($raw) ? max(1, (int) $raw) : self::DEFAULT_OUTBOX_MAX;
    }

    /**
     * $url as it may be shown: a password (or user) in it is masked, https://user:secret@host/ → https://***@host/.
     * The options page and the connection check show only this.
     */
    public static function displayUrl(string $url): string
    {
        return (string) preg_replace('~^([a-z][a-z0-9+.-]*://)[^/\s]*@~i', '$1***@', $url);
    }

    public static function token(string $side): string
    {
        return trim((string) Option::get(self::MODULE_ID, self::tokenOption($side), ''));
    }

    public static function hasToken(string $side): bool
    {
        return self::token($side) !== '';
    }

    public static function connectTimeout(): float
    {
        $value = self::number(Option::get(self::MODULE_ID, 'connect_timeout', ''), self::DEFAULT_CONNECT_TIMEOUT);

        return self::clamp($value, self::MIN_TIMEOUT, self::MAX_TIMEOUT);
    }

    /** Connect, send and read the status line together; never shorter than the connect timeout. */
    public static function totalTimeout(): float
    {
        $value = self::number(Option::get(self::MODULE_ID, 'total_timeout', ''), self::DEFAULT_TOTAL_TIMEOUT);

        return self::clamp($value, self::connectTimeout(), self::MAX_TIMEOUT);
    }

    /**
     * Sent as auth[domain], as Bitrix's own outgoing webhooks do; bxsync stores it with the event. Defaults to
     * the kernel's "Server URL" (main / server_name).
     */
    public static function domain(): string
    {
        $domain = self::storedDomain();
        if ($domain === '') {
            $domain = trim((string) Option::get('main', 'server_name', ''));
        }

        return $domain;
    }

    /** The domain typed on the options page, empty for the default. */
    public static function storedDomain(): string
    {
        return trim((string) Option::get(self::MODULE_ID, 'domain', ''));
    }

    /** The bxsync endpoint of one side, e.g. https://bxsync.example.com/api/bitrix/cms/. */
    public static function endpoint(string $side): string
    {
        $base = self::baseUrl();
        if ($base === '') {
            return '';
        }

        return rtrim($base, '/') . '/api/bitrix/' . $side . '/';
    }

    /**
     * Saves what the options page posted. An empty token field keeps the saved token (the page never shows
     * it again); `<side>_token_clear` removes it. Returns the problems found, in the user's words.
     *
     * @param array<string, mixed> $form
     * @return list<string>
     */
    public static function saveForm(array $form): array
    {
        $errors = [];
        $allowHttp = !empty($form['allow_http']);
        Option::set(self::MODULE_ID, 'allow_http', $allowHttp ? 'Y' : '');
        $base = trim((string) ($form['base_url'] ?? ''));
        if ($base !== '' && $base === self::displayUrl(self::baseUrl()) && $base !== self::baseUrl()) {
            $base = self::baseUrl(); // the masked address shown on the page came back: keep the stored credentials
        }
        if ($base !== '' && !preg_match('~^https?://[^/\s]+~i', $base)) {
            $errors[] = 'base_url';
        } elseif (self::isPlainHttp($base) && !$allowHttp) {
            $errors[] = 'base_url_http';
        } else {
            Option::set(self::MODULE_ID, 'base_url', $base);
        }
        foreach ([self::SIDE_SHOP, self::SIDE_CRM] as $side) {
            $option = self::tokenOption($side);
            if (!empty($form[$option . '_clear'])) {
                Option::set(self::MODULE_ID, $option, '');
                continue;
            }
            $token = trim((string) ($form[$option] ?? ''));
            if ($token !== '') {
                Option::set(self::MODULE_ID, $option, $token);
            }
        }
        foreach (['connect_timeout', 'total_timeout'] as $name) {
            $raw = trim(str_replace(',', '.', (string) ($form[$name] ?? '')));
            if ($raw === '') {
                Option::set(self::MODULE_ID, $name, '');
            } elseif (is_numeric($raw) && (float) $raw >= self::MIN_TIMEOUT && (float) $raw <= self::MAX_TIMEOUT) {
                Option::set(self::MODULE_ID, $name, $raw);
            } else {
                $errors[] = $name;
            }
        }
        Option::set(self::MODULE_ID, 'domain', trim((string) ($form['domain'] ?? '')));

        return $errors;
    }

    private static function isPlainHttp(string $url): bool
    {
        return stripos($url, 'http://') === 0;
    }

    private static function tokenOption(string $side): string
    {
        return $side . '_token';
    }

    /** @param mixed $raw */
    private static function number($raw, float $default): float
    {
        $raw = trim(str_replace(',', '.', (string) $raw));

        return is_numeric($raw) ? (float) $raw : $default;
    }

    private static function clamp(float $value, float $min, float $max): float
    {
        return max($min, min($max, $value));
    }
}
