<?php

$MESS['BXSYNC_FORWARDER_MODULE_NAME'] = 'bxsync forwarder';
$MESS['BXSYNC_FORWARDER_MODULE_DESCRIPTION'] = 'Sends order, payment and deal events of this portal to bxsync, which keeps order statuses and deal stages in sync.';
$MESS['BXSYNC_FORWARDER_PARTNER_NAME'] = 'bxsync';
