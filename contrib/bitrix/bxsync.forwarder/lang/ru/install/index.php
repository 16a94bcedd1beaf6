<?php

$MESS['BXSYNC_FORWARDER_MODULE_NAME'] = 'bxsync: передача событий';
$MESS['BXSYNC_FORWARDER_MODULE_DESCRIPTION'] = 'Передаёт события заказов, оплат и сделок этого портала в bxsync, который синхронизирует статусы заказов и стадии сделок.';
$MESS['BXSYNC_FORWARDER_PARTNER_NAME'] = 'bxsync';
