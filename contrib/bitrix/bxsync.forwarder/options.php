<?php

// The module's settings page: Settings → Product settings → Module settings → bxsync forwarder
// (Настройки → Настройки продукта → Настройки модулей → bxsync forwarder), i.e.
// /bitrix/admin/settings.php?mid=bxsync.forwarder. The kernel includes this file inside its admin page; no
// strict_types here, since the page calls the kernel's loosely typed admin helpers.
// Tokens are write-only: the page says whether one is saved and never prints it back; a password in the bxsync
// address is shown masked (Settings::displayUrl), and the masked address posted back keeps the stored one.

use Bitrix\Main\Application;
use Bitrix\Main\Loader;
use Bitrix\Main\Localization\Loc;
use Bxsync\Forwarder\ConnectionCheck;
use Bxsync\Forwarder\HandlerRegistry;
use Bxsync\Forwarder\OutboxStore;
use Bxsync\Forwarder\Settings;

defined('B_PROLOG_INCLUDED') && B_PROLOG_INCLUDED === true || die();

global $APPLICATION, $USER;

$moduleId = 'bxsync.forwarder';
if (!$USER->IsAdmin() || !Loader::includeModule($moduleId)) {
    return;
}
Loc::loadMessages(__FILE__);

$sides = [
    Settings::SIDE_SHOP => Loc::getMessage('BXSYNC_FORWARDER_SIDE_SHOP'),
    Settings::SIDE_CRM => Loc::getMessage('BXSYNC_FORWARDER_SIDE_CRM'),
];
$notes = [];
$errors = [];
$request = Application::getInstance()->getContext()->getRequest();

if ($request->isPost() && check_bitrix_sessid()) {
    if ($request->getPost('save') !== null) {
        $form = [];
        $fields = ['base_url', 'cms_token', 'cms_token_clear', 'crm_token', 'crm_token_clear'];
        foreach (array_merge($fields, ['connect_timeout', 'total_timeout', 'domain', 'allow_http']) as $name) {
            $form[$name] = (string) $request->getPost($name);
        }
        foreach (Settings::saveForm($form) as $field) {
            $errors[] = Loc::getMessage('BXSYNC_FORWARDER_INVALID_' . strtoupper($field));
        }
        if (!$errors) {
            $notes[] = Loc::getMessage('BXSYNC_FORWARDER_SAVED');
        }
    } elseif ($request->getPost('register_handlers') !== null) {
        $wired = HandlerRegistry::registerForInstalledModules();
        $notes[] = Loc::getMessage(
            'BXSYNC_FORWARDER_HANDLERS_REGISTERED',
            ['#MODULES#' => $wired ? implode(', ', $wired) : '—']
        );
    } elseif (isset($sides[(string) $request->getPost('check')])) {
        $side = (string) $request->getPost('check');
        $check = ConnectionCheck::run($side);
        $text = Loc::getMessage('BXSYNC_FORWARDER_CHECK_' . strtoupper($check['result']), [
            '#SIDE#' => $sides[$side],
            '#STATUS#' => (string) $check['status'],
            '#DETAIL#' => $check['detail'],
        ]);
        if ($check['result'] === ConnectionCheck::OK) {
            $notes[] = $text;
        } else {
            $errors[] = $text;
        }
    }
}

try {
    $backlog = OutboxStore::backlog();
} catch (\Throwable $e) {
    $backlog = null; // no table: the module was copied over an older install without installing again
}

foreach ($errors as $error) {
    CAdminMessage::ShowMessage(['MESSAGE' => $error, 'TYPE' => 'ERROR']);
}
foreach ($notes as $note) {
    CAdminMessage::ShowMessage(['MESSAGE' => $note, 'TYPE' => 'OK']);
}

$tabControl = new CAdminTabControl('bxsync_forwarder_tabs', [
    [
        'DIV' => 'bxsync_forwarder_settings',
        'TAB' => Loc::getMessage('BXSYNC_FORWARDER_TAB'),
        'TITLE' => Loc::getMessage('BXSYNC_FORWARDER_TAB_TITLE'),
    ],
]);
$action = $APPLICATION->GetCurPage() . '?mid=' . urlencode($moduleId) . '&lang=' . urlencode(LANGUAGE_ID);
$handlerStates = [];
foreach (HandlerRegistry::status() as $module => $state) {
    $handlerStates[$module] = !$state['installed'] ? 'BXSYNC_FORWARDER_MODULE_ABSENT'
        : ($state['registered'] ? 'BXSYNC_FORWARDER_HANDLERS_ON' : 'BXSYNC_FORWARDER_HANDLERS_OFF');
}
?>
<form method="post" action="<?= htmlspecialcharsbx($action) ?>">
    <?= bitrix_sessid_post() ?>
    <?php $tabControl->Begin(); ?>
    <?php $tabControl->BeginNextTab(); ?>
    <tr>
        <td width="40%"><label for="bxsync_base_url"><?= Loc::getMessage('BXSYNC_FORWARDER_BASE_URL') ?></label></td>
        <td width="60%">
            <input type="text" size="50" id="bxsync_base_url" name="base_url"
                value="<?= htmlspecialcharsbx(Settings::displayUrl(Settings::baseUrl())) ?>"
                placeholder="https://bxsync.example.com">
            <div><?= Loc::getMessage('BXSYNC_FORWARDER_BASE_URL_HINT') ?></div>
            <label>
                <input type="checkbox" name="allow_http" value="Y"<?= Settings::allowsHttp() ? ' checked' : '' ?>>
                <?= Loc::getMessage('BXSYNC_FORWARDER_ALLOW_HTTP') ?>
            </label>
        </td>
    </tr>
    <?php foreach ($sides as $side => $sideName) : ?>
    <tr>
        <td><label for="bxsync_<?= $side ?>_token">
            <?= Loc::getMessage('BXSYNC_FORWARDER_TOKEN', ['#SIDE#' => $sideName]) ?>
        </label></td>
        <td>
            <?php $placeholder = 'BXSYNC_FORWARDER_TOKEN_' . (Settings::hasToken($side) ? 'SAVED' : 'EMPTY'); ?>
            <input type="password" size="50" id="bxsync_<?= $side ?>_token" name="<?= $side ?>_token" value=""
                autocomplete="new-password" placeholder="<?= htmlspecialcharsbx(Loc::getMessage($placeholder)) ?>">
            <?php if (Settings::hasToken($side)) : ?>
            <label>
                <input type="checkbox" name="<?= $side ?>_token_clear" value="Y">
                <?= Loc::getMessage('BXSYNC_FORWARDER_TOKEN_CLEAR') ?>
            </label>
            <?php endif; ?>
            <div><?= Loc::getMessage('BXSYNC_FORWARDER_TOKEN_HINT_' . strtoupper($side)) ?></div>
        </td>
    </tr>
    <?php endforeach; ?>
    <tr>
        <td><label for="bxsync_connect_timeout"><?= Loc::getMessage('BXSYNC_FORWARDER_CONNECT_TIMEOUT') ?></label></td>
        <td><input type="text" size="6" id="bxsync_connect_timeout" name="connect_timeout"
            value="<?= htmlspecialcharsbx((string) Settings::connectTimeout()) ?>"></td>
    </tr>
    <tr>
        <td><label for="bxsync_total_timeout"><?= Loc::getMessage('BXSYNC_FORWARDER_TOTAL_TIMEOUT') ?></label></td>
        <td>
            <input type="text" size="6" id="bxsync_total_timeout" name="total_timeout"
                value="<?= htmlspecialcharsbx((string) Settings::totalTimeout()) ?>">
            <div><?= Loc::getMessage('BXSYNC_FORWARDER_TIMEOUT_HINT') ?></div>
        </td>
    </tr>
    <tr>
        <td><label for="bxsync_domain"><?= Loc::getMessage('BXSYNC_FORWARDER_DOMAIN') ?></label></td>
        <td><input type="text" size="30" id="bxsync_domain" name="domain"
            value="<?= htmlspecialcharsbx(Settings::storedDomain()) ?>"
            placeholder="<?= htmlspecialcharsbx(Settings::domain()) ?>"></td>
    </tr>
    <tr class="heading"><td colspan="2"><?= Loc::getMessage('BXSYNC_FORWARDER_OUTBOX') ?></td></tr>
    <tr>
        <td><?= Loc::getMessage('BXSYNC_FORWARDER_OUTBOX_WAITING') ?></td>
        <td>
            <?php if ($backlog === null) : ?>
                <?= Loc::getMessage('BXSYNC_FORWARDER_OUTBOX_MISSING') ?>
            <?php elseif ($backlog['count'] === 0) : ?>
                <?= Loc::getMessage('BXSYNC_FORWARDER_OUTBOX_EMPTY') ?>
            <?php else : ?>
                <?= Loc::getMessage('BXSYNC_FORWARDER_OUTBOX_BACKLOG', [
                    '#COUNT#' => (string) $backlog['count'],
                    '#OLDEST#' => htmlspecialcharsbx(date('Y-m-d H:i:s', (int) $backlog['oldest'])),
                    '#MAX#' => (string) Settings::outboxMax(),
                ]) ?>
            <?php endif; ?>
        </td>
    </tr>
    <tr class="heading"><td colspan="2"><?= Loc::getMessage('BXSYNC_FORWARDER_HANDLERS') ?></td></tr>
    <?php foreach ($handlerStates as $module => $message) : ?>
    <tr>
        <td><?= htmlspecialcharsbx($module) ?></td>
        <td><?= Loc::getMessage($message) ?></td>
    </tr>
    <?php endforeach; ?>
    <?php $tabControl->Buttons(); ?>
    <input type="submit" name="save" class="adm-btn-save"
        value="<?= htmlspecialcharsbx(Loc::getMessage('BXSYNC_FORWARDER_SAVE')) ?>">
    <?php foreach ($sides as $side => $sideName) : ?>
    <button type="submit" name="check" value="<?= $side ?>" class="adm-btn">
        <?= Loc::getMessage('BXSYNC_FORWARDER_CHECK', ['#SIDE#' => $sideName]) ?>
    </button>
    <?php endforeach; ?>
    <input type="submit" name="register_handlers"
        value="<?= htmlspecialcharsbx(Loc::getMessage('BXSYNC_FORWARDER_REGISTER')) ?>">
    <?php $tabControl->End(); ?>
</form>
