<?php

declare(strict_types=1);

// Loaded by Loader::includeModule('bxsync.forwarder'), which the kernel calls before it runs one of our handlers.
// The classes are registered explicitly rather than left to the lib/ naming convention, so the module works the
// same from /local/modules and /bitrix/modules on any kernel version.
// https://dev.1c-bitrix.ru/api_d7/bitrix/main/loader/registerautoloadclasses.php

use Bitrix\Main\Loader;

Loader::registerAutoLoadClasses('bxsync.forwarder', [
    'Bxsync\\Forwarder\\ConnectionCheck' => 'lib/connectioncheck.php',
    'Bxsync\\Forwarder\\CrmHandlers' => 'lib/crmhandlers.php',
    'Bxsync\\Forwarder\\EventArgs' => 'lib/eventargs.php',
    'Bxsync\\Forwarder\\HandlerRegistry' => 'lib/handlerregistry.php',
    'Bxsync\\Forwarder\\Log' => 'lib/log.php',
    'Bxsync\\Forwarder\\Outbox' => 'lib/outbox.php',
    'Bxsync\\Forwarder\\OutboxStore' => 'lib/outboxstore.php',
    'Bxsync\\Forwarder\\OutboxTable' => 'lib/outboxtable.php',
    'Bxsync\\Forwarder\\SaleHandlers' => 'lib/salehandlers.php',
    'Bxsync\\Forwarder\\Settings' => 'lib/settings.php',
    'Bxsync\\Forwarder\\TransportError' => 'lib/transporterror.php',
    'Bxsync\\Forwarder\\WebhookPoster' => 'lib/webhookposter.php',
]);
