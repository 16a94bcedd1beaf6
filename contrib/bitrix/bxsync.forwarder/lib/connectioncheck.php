<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * The options page's "Check connection" button: one POST, now, with the side's token and an event bxsync does not
 * act on. bxsync answers 200 (and lists it under inbound events as ignored) when the address and the token are right,
 * 403 when the token is not the one in BXSYNC_CMS_APP_TOKEN / BXSYNC_CRM_APP_TOKEN.
 */
final class ConnectionCheck
{
    public const EVENT = 'ONBXSYNCFORWARDERCHECK';

    public const OK = 'ok';
    public const NO_URL = 'no_url';
    public const NO_TOKEN = 'no_token';
    public const WRONG_TOKEN = 'wrong_token';
    public const UNREACHABLE = 'unreachable';
    public const UNEXPECTED = 'unexpected';
    public const PLAIN_HTTP = 'plain_http';

    /** @return array{result: string, status: int, detail: string} */
    public static function run(string $side): array
    {
        if (!in_array($side, [Settings::SIDE_SHOP, Settings::SIDE_CRM], true)) {
            return ['result' => self::UNEXPECTED, 'status' => 0, 'detail' => 'unknown side'];
        }
        $url = Settings::endpoint($side);
        if ($url === '') {
            return ['result' => self::NO_URL, 'status' => 0, 'detail' => ''];
        }
        if (!Settings::hasToken($side)) {
            return ['result' => self::NO_TOKEN, 'status' => 0, 'detail' => ''];
        }
        if (Settings::sendingProblem() !== '') {
            return ['result' => self::PLAIN_HTTP, 'status' => 0, 'detail' => ''];
        }
        // What the page shows names the endpoint without the credentials an address may carry.
        $shown = Settings::displayUrl($url);
        $poster = new WebhookPoster(Settings::connectTimeout(), Settings::totalTimeout());
        try {
            $status = $poster->post($url, Outbox::form($side, self::EVENT, 0));
        } catch (TransportError $e) {
            return ['result' => self::UNREACHABLE, 'status' => 0, 'detail' => $e->getMessage()];
        }
        if ($status >= 200 && $status < 300) {
            return ['result' => self::OK, 'status' => $status, 'detail' => $shown];
        }
        if ($status === 403) {
            return ['result' => self::WRONG_TOKEN, 'status' => $status, 'detail' => $shown];
        }

        return ['result' => self::UNEXPECTED, 'status' => $status, 'detail' => $shown];
    }
}
