<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Application;

/**
 * The events of a portal, kept in a table until bxsync has them (the durable outbox, OutboxTable).
 *
 * A kernel handler only calls add(): one INSERT, no network, nothing that can throw into the sale or crm module.
 * Repeated saves of one entity within the hit (the sale module saves an order, its payments and the order again on
 * one checkout) make one row per event and id: bxsync re-reads the entity anyway, since events carry only ids
 * (docs/bitrix.md "Events").
 *
 * Sending after the response: Application::addBackgroundJob runs jobs in terminate(), after HttpResponse::flush()
 * has called fastcgi_finish_request() under php-fpm
 * (https://dev.1c-bitrix.ru/api_d7/bitrix/main/application/addbackgroundjob.php; kernel copy:
 * https://github.com/avshatalov48/bitrix-core-business/blob/master/modules/main/lib/application.php and
 * .../modules/main/lib/httpresponse.php). A script that never reaches terminate() (a cron script, an old kernel
 * without addBackgroundJob) still sends from a shutdown function; whichever runs first sends.
 *
 * The hit tries once: the oldest rows, in order, until the first failure (one timeout per hit at most). What is
 * left waits for the agent (agent(), every minute, registered on install with CAgent::AddAgent:
 * https://dev.1c-bitrix.ru/api_help/main/reference/cagent/addagent.php), which sends in the same order. A row leaves
 * the table once bxsync answered 2xx, or refused it for good (another 4xx: logged). The table is bounded
 * (Settings::outboxMax): when full, the oldest rows go, with a logged warning.
 */
final class Outbox
{
    /** No hit spends longer than this sending, even to a slow but answering bxsync; the rest waits for the agent. */
    public const HIT_BUDGET_SECONDS = 10.0;
    /** A hit sends at most this many of the oldest rows: a long backlog is the agent's work, not a page's. */
    public const HIT_BATCH = 20;
    /** One agent run: this long at most, this many rows at most. */
    public const AGENT_BUDGET_SECONDS = 20.0;
    public const AGENT_BATCH = 500;
    /** The agent's PHP, as b_agent stores it; it returns itself to run again. */
    public const AGENT = '\\Bxsync\\Forwarder\\Outbox::agent();';
    public const AGENT_INTERVAL_SECONDS = 60;
    /** A CLI script (an import, an agent) sends in batches of this many, not all at its very end. */
    public const CLI_BATCH = 50;

    /** @var array<string, array{side: string, event: string, id: int, fields: array<string, string>, row: int}> */
    private static $pending = [];
    /** @var bool */
    private static $jobScheduled = false;
    /** @var bool */
    private static $shutdownRegistered = false;
    /** @var bool */
    private static $flushing = false;

    /**
     * Queues one event for bxsync: a row in the outbox. Later calls for the same side, event and id in this hit
     * add nothing. A side whose token is not set is not forwarded by this portal (see SaleHandlers).
     *
     * @param array<string, string> $extraFields more data[FIELDS] keys, as Bitrix sends them for this event
     */
    public static function add(string $side, string $event, int $id, array $extraFields = []): void
    {
        if ($id <= 0 || !Settings::hasToken($side)) {
            return;
        }
        $key = $side . ':' . $event . ':' . $id;
        if (isset(self::$pending[$key])) {
            return;
        }
        $item = ['side' => $side, 'event' => $event, 'id' => $id, 'fields' => $extraFields, 'row' => 0];
        try {
            $item = OutboxStore::append($side, $event, $id, $extraFields);
        } catch (\Throwable $e) {
            // The table is unavailable: this hit still sends its copy once, as before the outbox existed.
            Log::warning('could not store ' . $event . ' ' . $id . ' in the bxsync outbox: ' . get_class($e)
                . ': ' . $e->getMessage());
        }
        self::$pending[$key] = $item;

        if (PHP_SAPI === 'cli' && count(self::$pending) >= self::CLI_BATCH && !self::$flushing) {
            self::flush(); // nobody waits on a CLI script's response
            return;
        }
        self::schedule();
    }

    /** Sends what waits, oldest first, once. Called by the kernel after the response; never throws. */
    public static function flush(): void
    {
        if (self::$flushing) {
            return;
        }
        self::$flushing = true;
        self::$jobScheduled = false;
        try {
            $unstored = array_values(array_filter(self::$pending, static function (array $item): bool {
                return $item['row'] === 0;
            }));
            $sent = self::$pending !== [];
            self::$pending = [];
            if ($sent) {
                self::deliver(self::HIT_BUDGET_SECONDS, self::HIT_BATCH, $unstored);
            }
        } catch (\Throwable $e) {
            Log::warning('could not send events to bxsync: ' . get_class($e) . ': ' . $e->getMessage());
        } finally {
            self::$flushing = false;
        }
    }

    /** The agent: sends the backlog in order, then asks to run again. Never throws into the kernel's agent loop. */
    public static function agent(): string
    {
        try {
            self::deliver(self::AGENT_BUDGET_SECONDS, self::AGENT_BATCH, []);
        } catch (\Throwable $e) {
            Log::warning('the bxsync outbox agent failed: ' . get_class($e) . ': ' . $e->getMessage());
        }

        return self::AGENT;
    }

    /** @return list<array{side: string, event: string, id: int}> what this hit queued, for tests */
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

    /**
     * Sends the oldest rows (at most $limit), then $unstored (this hit's events the table could not take), in
     * order, until the first failure or the end of $budget seconds.
     *
     * @param list<array{side: string, event: string, id: int, fields: array<string, string>, row: int}> $unstored
     */
    private static function deliver(float $budget, int $limit, array $unstored): void
    {
        $problem = Settings::sendingProblem();
        if ($problem !== '') {
            Log::warning(sprintf(
                'not sent to bxsync: %d event(s) wait in the outbox%s (%s)',
                self::waitingCount() + count($unstored),
                $unstored ? ', ' . count($unstored) . ' of them only in this hit' : '',
                $problem
            ));

            return;
        }
        $poster = new WebhookPoster(Settings::connectTimeout(), Settings::totalTimeout());
        $budgetEnds = microtime(true) + $budget;
        $refused = [];
        $failure = '';
        $failed = null;
        foreach (array_merge(self::stored($limit), $unstored) as $item) {
            if (microtime(true) > $budgetEnds) {
                $failure = 'this run spent ' . $budget . ' s sending';
                $failed = $item;
                break;
            }
            if (!Settings::hasToken($item['side'])) {
                self::forget($item); // the token was removed: this portal no longer forwards this side
                continue;
            }
            try {
                $status = $poster->post(
                    Settings::endpoint($item['side']),
                    self::form($item['side'], $item['event'], $item['id'], $item['fields'])
                );
            } catch (TransportError $e) {
                $failure = $e->getMessage();
                $failed = $item;
                break;
            }
            if ($status === 408 || $status === 429 || $status >= 500) {
                // Busy or down: it waits, and so does everything after it (in order).
                $failure = 'bxsync answered ' . $status;
                $failed = $item;
                break;
            }
            if ($status < 200 || $status >= 300) {
                $refused[$status][] = $item['event'] . ' ' . $item['id'];
            }
            self::forget($item);
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
        if ($failed !== null) {
            self::waiting($failed, $failure, $unstored);
        }
    }

    /**
     * The oldest rows, or none when the table cannot be read (this hit's own events are then sent from memory).
     *
     * @return list<array{side: string, event: string, id: int, fields: array<string, string>, row: int}>
     */
    private static function stored(int $limit): array
    {
        try {
            return OutboxStore::oldest($limit);
        } catch (\Throwable $e) {
            Log::warning('could not read the bxsync outbox: ' . get_class($e) . ': ' . $e->getMessage());

            return [];
        }
    }

    private static function waitingCount(): int
    {
        try {
            return OutboxStore::backlog()['count'];
        } catch (\Throwable $e) {
            return 0;
        }
    }

    /** @param array{side: string, event: string, id: int, fields: array<string, string>, row: int} $item */
    private static function forget(array $item): void
    {
        if ($item['row'] > 0) {
            OutboxStore::remove($item['row']);
        }
    }

    /**
     * One warning for a run that stopped: what waits, and why.
     *
     * @param array{side: string, event: string, id: int, fields: array<string, string>, row: int} $failed
     * @param list<array{side: string, event: string, id: int, fields: array<string, string>, row: int}> $unstored
     */
    private static function waiting(array $failed, string $failure, array $unstored): void
    {
        if ($failed['row'] > 0) {
            try {
                OutboxStore::retried($failed['row']);
            } catch (\Throwable $e) {
                // Only a counter for the options page; the row itself stays.
            }
        }
        $labels = [];
        foreach (self::stored(6) as $item) {
            $labels[] = $item['event'] . ' ' . $item['id'];
        }
        $count = self::waitingCount();
        $lost = [];
        foreach ($unstored as $item) {
            $lost[] = $item['event'] . ' ' . $item['id'];
        }
        Log::warning(sprintf(
            'not sent to bxsync yet: %s (sending stopped after: %s); %d event(s) wait in the outbox and the agent '
                . 'retries them every minute, in order%s',
            self::summary($labels, $count),
            $failure,
            $count,
            $lost ? '; not stored, so left to bxsync\'s reconciliation: ' . self::summary($lost) : ''
        ));
    }

    /**
     * "A, B, C and 7 more", sorted, for a log line.
     *
     * @param list<string> $labels
     */
    public static function summary(array $labels, int $total = 0): string
    {
        sort($labels);
        $shown = array_slice($labels, 0, 5);
        $more = max($total, count($labels)) - count($shown);

        return implode(', ', $shown) . ($more > 0 ? ' and ' . $more . ' more' : '');
    }
}
