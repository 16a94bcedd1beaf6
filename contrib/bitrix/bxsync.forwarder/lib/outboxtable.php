<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

use Bitrix\Main\Entity\DataManager;
use Bitrix\Main\Entity\IntegerField;
use Bitrix\Main\Entity\StringField;
use Bitrix\Main\Entity\TextField;

/**
 * The durable outbox: one row per event waiting for bxsync, oldest first (ID order). Described with the D7 ORM so
 * the kernel builds the SQL of the site's database (MySQL or PostgreSQL): install/index.php creates the table with
 * Entity\Base::createDbTable() (https://dev.1c-bitrix.ru/api_d7/bitrix/main/entity/base/createdbtable.php) and
 * uninstalling drops it with Connection::dropTable()
 * (https://dev.1c-bitrix.ru/api_d7/bitrix/main/db/connection/droptable.php). A row holds ids only, never a token:
 * the token is added from the settings when the row is sent.
 */
final class OutboxTable extends DataManager
{
    public static function getTableName()
    {
        return 'b_bxsync_forwarder_outbox';
    }

    public static function getMap()
    {
        return [
            new IntegerField('ID', ['primary' => true, 'autocomplete' => true]),
            new StringField('SIDE', ['required' => true, 'size' => 3]),
            new StringField('EVENT', ['required' => true, 'size' => 40]),
            new IntegerField('ENTITY_ID', ['required' => true]),
            new TextField('FIELDS'),
            new IntegerField('CREATED_AT', ['required' => true]),
            new IntegerField('ATTEMPTS', ['default_value' => 0]),
        ];
    }
}
