<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * One form-encoded POST with a hard deadline, over PHP streams.
 *
 * Why not Bitrix\Main\Web\HttpClient: its socketTimeout/streamTimeout are whole seconds, and streamTimeout bounds
 * each read, not the request, so a bxsync that trickles bytes could hold a manager's save far longer than we
 * allow (https://dev.1c-bitrix.ru/api_d7/bitrix/main/web/httpclient/__construct.php); since main 23.0 it may
 * also go through curl or PSR-18 depending on .settings.php
 * (https://dev.1c-bitrix.ru/api_d7/bitrix/main/web/httpclient).
 * Streams need no extension (boxed installs often lack curl), and what the tests time is the code that ships.
 *
 * Not covered by the deadline: DNS resolution, which PHP does with the blocking system resolver. Point the base URL
 * at a name the server resolves locally (or an IP) if DNS there is slow.
 */
final class WebhookPoster
{
    private const USER_AGENT = 'bxsync-forwarder/1.0 (+1C-Bitrix module bxsync.forwarder)';

    /** @var float */
    private $connectTimeout;
    /** @var float */
    private $totalTimeout;

    public function __construct(float $connectTimeout, float $totalTimeout)
    {
        $this->connectTimeout = $connectTimeout;
        $this->totalTimeout = max($totalTimeout, $connectTimeout);
    }

    /**
     * POSTs $form to $url as application/x-www-form-urlencoded with PHP bracket keys (the way Bitrix's outgoing
     * webhooks send data[FIELDS][ID]) and returns the HTTP status. Reads only the status line.
     *
     * @param array<string, mixed> $form
     * @throws TransportError when bxsync is unreachable or does not answer before the total timeout
     */
    public function post(string $url, array $form): int
    {
        $started = microtime(true);
        $deadline = $started + $this->totalTimeout;
        $target = self::parse($url);
        $body = http_build_query($form, '', '&', PHP_QUERY_RFC1738);

        $context = stream_context_create([
            'ssl' => [
                'verify_peer' => true,
                'verify_peer_name' => true,
                'peer_name' => $target['host'],
                'SNI_enabled' => true,
            ],
        ]);
        $errno = 0;
        $errstr = '';
        // The connect timeout also bounds the TLS handshake of an ssl:// client stream.
        $socket = @stream_socket_client(
            $target['transport'] . '://' . $target['host'] . ':' . $target['port'],
            $errno,
            $errstr,
            min($this->connectTimeout, $this->totalTimeout),
            STREAM_CLIENT_CONNECT,
            $context
        );
        if ($socket === false) {
            throw new TransportError(sprintf(
                'cannot connect to %s (%s) after %.2f s',
                $target['display'],
                $errstr !== '' ? $errstr : 'error ' . $errno,
                microtime(true) - $started
            ));
        }

        try {
            $request = 'POST ' . $target['path'] . " HTTP/1.1\r\n"
                . 'Host: ' . $target['hostHeader'] . "\r\n"
                . "Content-Type: application/x-www-form-urlencoded\r\n"
                . 'Content-Length: ' . strlen($body) . "\r\n"
                . 'User-Agent: ' . self::USER_AGENT . "\r\n"
                . "Accept: application/json\r\n"
                . $target['authorization']
                . "Connection: close\r\n\r\n"
                . $body;
            self::write($socket, $request, $deadline, $target['display']);

            return self::readStatus($socket, $deadline, $target['display'], $started);
        } finally {
            fclose($socket);
        }
    }

    /**
     * @return array{transport: string, host: string, port: int, path: string, hostHeader: string,
     *     authorization: string, display: string}
     */
    private static function parse(string $url): array
    {
        $parts = parse_url($url);
        $scheme = strtolower((string) ($parts['scheme'] ?? ''));
        $host = (string) ($parts['host'] ?? '');
        if (($scheme !== 'http' && $scheme !== 'https') || $host === '') {
            throw new TransportError('the bxsync URL must start with http:// or https://');
        }
        $defaultPort = $scheme === 'https' ? 443 : 80;
        $port = (int) ($parts['port'] ?? $defaultPort);
        $path = (string) ($parts['path'] ?? '/');
        if (isset($parts['query'])) {
            $path .= '?' . $parts['query'];
        }
        $authorization = '';
        if (isset($parts['user'])) {
            // bxsync behind HTTP basic auth: https://user:password@host/ (kept out of every log line).
            $credentials = rawurldecode($parts['user']) . ':' . rawurldecode((string) ($parts['pass'] ?? ''));
            $authorization = 'Authorization: Basic ' . base64_encode($credentials) . "\r\n";
        }
        $hostHeader = $host . ($port === $defaultPort ? '' : ':' . $port);

        return [
            'transport' => $scheme === 'https' ? 'ssl' : 'tcp',
            'host' => $host,
            'port' => $port,
            'path' => $path,
            'hostHeader' => $hostHeader,
            'authorization' => $authorization,
            'display' => $scheme . '://' . $hostHeader . $path,
        ];
    }

    /** @param resource $socket */
    private static function write($socket, string $data, float $deadline, string $display): void
    {
        stream_set_blocking($socket, false);
        while ($data !== '') {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new TransportError('timed out sending to ' . $display);
            }
            $read = null;
            $write = [$socket];
            $except = null;
            if (@stream_select($read, $write, $except, (int) $left, (int) (($left - (int) $left) * 1e6)) === 0) {
                continue; // the loop's deadline check ends it
            }
            $sent = @fwrite($socket, $data);
            if ($sent === false) {
                throw new TransportError('connection lost while sending to ' . $display);
            }
            $data = (string) substr($data, $sent);
        }
    }

    /** @param resource $socket */
    private static function readStatus($socket, float $deadline, string $display, float $started): int
    {
        $received = '';
        while (strpos($received, "\r\n") === false) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                throw new TransportError(sprintf(
                    'no answer from %s within %.2f s',
                    $display,
                    microtime(true) - $started
                ));
            }
            $read = [$socket];
            $write = null;
            $except = null;
            if (@stream_select($read, $write, $except, (int) $left, (int) (($left - (int) $left) * 1e6)) === 0) {
                continue;
            }
            $chunk = @fread($socket, 1024);
            if ($chunk === false || ($chunk === '' && feof($socket))) {
                throw new TransportError('connection closed by ' . $display . ' before an answer');
            }
            $received .= $chunk;
            if (strlen($received) > 8192) {
                break;
            }
        }
        if (!preg_match('~^HTTP/\d(?:\.\d)?\s+(\d{3})~', $received, $match)) {
            throw new TransportError('not an HTTP answer from ' . $display);
        }

        return (int) $match[1];
    }
}
