<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Application;

/**
 * The events of one hit, sent to bxsync once the response has gone to the browser.
 *
 * A kernel handler only calls add(): no network, nothing that can throw into the sale or crm module. Repeated
 * saves of one entity within the hit (the sale module saves an order, its payments and the order again on one
 * checkout) collapse into one POST per event and id: bxsync re-reads the entity anyway, since events carry only
 * ids (docs/bitrix.md "Events").
 *
 * Sending after the response: Application::addBackgroundJob runs jobs in terminate(), after HttpResponse::flush()
 * has called fastcgi_finish_request() under php-fpm
 * (https://dev.1c-bitrix.ru/api_d7/bitrix/main/application/addbackgroundjob.php; kernel copy:
 * https://github.com/avshatalov48/bitrix-core-business/blob/master/modules/main/lib/application.php and
 * .../modules/main/lib/httpresponse.php). A script that never reaches terminate() (a cron script, an old kernel
 * without addBackgroundJob) still sends from a shutdown function; whichever runs first sends, the other finds the
 * outbox empty.
 *
 * When bxsync is down or hangs, the first failure ends the hit's sending: one timeout per hit at most, logged
 * once, and reconciliation (every few minutes) picks up what was not sent.
 */
final class Outbox
{
    /** No hit spends longer than this sending, even to a slow but answering bxsync; the rest waits for reconciliation. */
    public const HIT_BUDGET_SECONDS = 10.0;
    /** A CLI script (an import, an agent) sends in batches of this many, not all at its very end. */
    public const CLI_BATCH = 50;

    /** @var array<string, array{side: string, event: string, id: int, fields: array<string, string>}> */
    private static $pending = [];
    /** @var bool */
    private static $jobScheduled = false;
    /** @var bool */
    private static $shutdownRegistered = false;
    /** @var bool */
    private static $flushing = false;

    /**
     * Queues one event for bxsync. Later calls for the same side, event and id replace earlier ones.
     *
     * @param array<string, string> $extraFields more data[FIELDS] keys, as Bitrix sends them for this event
     */
    public static function add(string $side, string $event, int $id, array $extraFields = []): void
    {
        if ($id <= 0) {
            return;
        }
        $key = $side . ':' . $event . ':' . $id;
        unset(self::$pending[$key]); // the latest save goes last
        self::$pending[$key] = ['side' => $side, 'event' => $event, 'id' => $id, 'fields' => $extraFields];

        if (PHP_SAPI === 'cli' && count(self::$pending) >= self::CLI_BATCH && !self::$flushing) {
            self::flush(); // nobody waits on a CLI script's response
            return;
        }
        self::schedule();
    }

    /** Sends everything queued in this hit. Called by the kernel after the response; never throws. */
    public static function flush(): void
    {
        if (self::$flushing) {
            return;
        }
        self::$flushing = true;
        self::$jobScheduled = false;
        try {
            while (self::$pending) {
                $batch = self::$pending;
                self::$pending = [];
                self::send($batch);
            }
        } catch (\Throwable $e) {
            Log::warning('could not send events to bxsync: ' . get_class($e) . ': ' . $e->getMessage());
        } finally {
            self::$flushing = false;
        }
    }

    /** @return list<array{side: string, event: string, id: int}> what is queued now, for the options page and tests */
    public static function pending(): array
    {
        $list = [];
        foreach (self::$pending as $item) {
            $list[] = ['side' => $item['side'], 'event' => $item['event'], 'id' => $item['id']];
        }

        return $list;
    }

    /**
     * The POST body of one event, exactly as a Bitrix outgoing webhook sends it (docs/bitrix.md "Events").
     *
     * @param array<string, string> $extraFields
     * @return array<string, mixed>
     */
    public static function form(string $side, string $event, int $id, array $extraFields = []): array
    {
        $form = [
            'event' => $event,
            'data' => ['FIELDS' => ['ID' => (string) $id] + $extraFields],
            'ts' => (string) time(),
            'auth' => [],
        ];
        $domain = Settings::domain();
        if ($domain !== '') {
            $form['auth']['domain'] = $domain;
        }
        $form['auth']['application_token'] = Settings::token($side);

        return $form;
    }

    private static function schedule(): void
    {
        $kernelRunsJobs = class_exists(Application::class) && method_exists(Application::class, 'addBackgroundJob');
        if (!self::$jobScheduled && $kernelRunsJobs) {
            try {
                Application::getInstance()->addBackgroundJob([self::class, 'flush']);
                self::$jobScheduled = true;
            } catch (\Throwable $e) {
                // An old or half-initialised kernel: the shutdown function below still sends.
            }
        }
        if (!self::$shutdownRegistered) {
            register_shutdown_function([self::class, 'flush']);
            self::$shutdownRegistered = true;
        }
    }

    /** @param array<string, array{side: string, event: string, id: int, fields: array<string, string>}> $batch */
    private static function send(array $batch): void
    {
        // Payments first: if bxsync stops answering halfway, the change a customer paid for got through.
        uasort($batch, static function (array $a, array $b): int {
            return (int) ($b['event'] === 'ONPAYMENTENTITYSAVED') <=> (int) ($a['event'] === 'ONPAYMENTENTITYSAVED');
        });
        $poster = new WebhookPoster(Settings::connectTimeout(), Settings::totalTimeout());
        $budgetEnds = microtime(true) + self::HIT_BUDGET_SECONDS;
        $refused = [];
        $unsent = [];
        $notConfigured = [];
        $failure = '';
        foreach ($batch as $item) {
            $label = $item['event'] . ' ' . $item['id'];
            $url = Settings::endpoint($item['side']);
            if (!Settings::hasToken($item['side'])) {
                continue; // this portal does not forward this side (see SaleHandlers)
            }
            if ($url === '') {
                $notConfigured[] = $label;
                continue;
            }
            if ($failure !== '' || microtime(true) > $budgetEnds) {
                $unsent[] = $label;
                $failure = $failure !== '' ? $failure : 'this hit spent ' . self::HIT_BUDGET_SECONDS . ' s sending';
                continue;
            }
            try {
                $status = $poster->post($url, self::form($item['side'], $item['event'], $item['id'], $item['fields']));
            } catch (TransportError $e) {
                $failure = $e->getMessage();
                $unsent[] = $label;
                continue;
            }
            if ($status < 200 || $status >= 300) {
                $refused[$status][] = $label;
            }
        }
        foreach ($refused as $status => $labels) {
            Log::warning(sprintf(
                'bxsync answered %d to %s%s',
                $status,
                self::summary($labels),
                $status === 403 ? ': the application token on the bxsync forwarder settings page does not match bxsync'
                    . ' (BXSYNC_CMS_APP_TOKEN / BXSYNC_CRM_APP_TOKEN)' : ''
            ));
        }
        if ($notConfigured) {
            Log::warning('not sent to bxsync: ' . self::summary($notConfigured)
                . ' (the bxsync URL is not set on the bxsync forwarder settings page)');
        }
        if ($unsent) {
            Log::warning(sprintf(
                'not sent to bxsync: %s (sending stopped after: %s); %s',
                self::summary($unsent),
                $failure,
                'bxsync\'s reconciliation will pick these changes up'
            ));
        }
    }

    /** @param list<string> $labels */
    private static function summary(array $labels): string
    {
        $shown = array_slice($labels, 0, 5);
        $more = count($labels) - count($shown);

        return implode(', ', $shown) . ($more > 0 ? ' and ' . $more . ' more' : '');
    }
}
