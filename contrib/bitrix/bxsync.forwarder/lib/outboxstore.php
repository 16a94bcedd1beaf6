<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Application;
use Bitrix\Main\Entity\Base;

/**
 * The outbox table's rows: append (bounded: the oldest rows go, with a logged warning, when it is full), read the
 * oldest, remove, count. Every method may throw (the database); callers in a kernel handler catch.
 */
final class OutboxStore
{
    /** @return array{side: string, event: string, id: int, fields: array<string, string>, row: int} */
    public static function append(string $side, string $event, int $id, array $fields): array
    {
        self::makeRoom();
        $result = OutboxTable::add([
            'SIDE' => $side,
            'EVENT' => $event,
            'ENTITY_ID' => $id,
            'FIELDS' => json_encode($fields),
            'CREATED_AT' => time(),
            'ATTEMPTS' => 0,
        ]);
        $row = $result->isSuccess() ? (int) $result->getId() : 0;

        return ['side' => $side, 'event' => $event, 'id' => $id, 'fields' => $fields, 'row' => $row];
    }

    /** @return list<array{side: string, event: string, id: int, fields: array<string, string>, row: int}> oldest first */
    public static function oldest(int $limit): array
    {
        $rows = [];
        $result = OutboxTable::getList(['order' => ['ID' => 'ASC'], 'limit' => $limit]);
        while ($row = $result->fetch()) {
            $fields = json_decode((string) $row['FIELDS'], true);
            $rows[] = [
                'side' => (string) $row['SIDE'],
                'event' => (string) $row['EVENT'],
                'id' => (int) $row['ENTITY_ID'],
                'fields' => is_array($fields) ? $fields : [],
                'row' => (int) $row['ID'],
            ];
        }

        return $rows;
    }

    public static function remove(int $row): void
    {
        OutboxTable::delete($row);
    }

    public static function retried(int $row): void
    {
        $current = OutboxTable::getList(['filter' => ['=ID' => $row], 'select' => ['ATTEMPTS']])->fetch();
        if ($current) {
            OutboxTable::update($row, ['ATTEMPTS' => (int) $current['ATTEMPTS'] + 1]);
        }
    }

    /** @return array{count: int, oldest: int|null} how many events wait, and when the oldest was queued */
    public static function backlog(): array
    {
        $count = (int) OutboxTable::getCount();
        $oldest = $count ? OutboxTable::getList(['order' => ['ID' => 'ASC'], 'limit' => 1, 'select' => ['CREATED_AT']])->fetch() : null;

        return ['count' => $count, 'oldest' => $oldest ? (int) $oldest['CREATED_AT'] : null];
    }

    /** Creates the table unless it is there (install; again from the options page does no harm). */
    public static function install(): void
    {
        $entity = Base::getInstance(OutboxTable::class);
        if (!Application::getConnection()->isTableExists($entity->getDBTableName())) {
            $entity->createDbTable();
        }
    }

    /** Drops the table with what it still holds (uninstall): ids only, nothing secret. */
    public static function uninstall(): void
    {
        $connection = Application::getConnection();
        if ($connection->isTableExists(OutboxTable::getTableName())) {
            $connection->dropTable(OutboxTable::getTableName());
        }
    }

    /** A full outbox drops its oldest rows: bxsync's reconciliation finds those changes, a stuck table helps nobody. */
    private static function makeRoom(): void
    {
        $max = Settings::outboxMax();
        $count = (int) OutboxTable::getCount();
        if ($count < $max) {
            return;
        }
        $dropped = [];
        foreach (self::oldest($count - $max + 1) as $item) {
            OutboxTable::delete($item['row']);
            $dropped[] = $item['event'] . ' ' . $item['id'];
        }
        Log::warning(sprintf(
            'the bxsync outbox is full (%d events): dropped the oldest %d (%s); bxsync\'s reconciliation will pick '
                . 'these changes up. Is bxsync down, or is its address wrong?',
            $max,
            count($dropped),
            Outbox::summary($dropped)
        ));
    }
}
