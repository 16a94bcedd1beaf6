<?php

declare(strict_types=1);

// The installer Bitrix runs from Marketplace → Installed solutions (Marketplace → Установленные решения): a class
// named after the module id with the dot replaced, with DoInstall()/DoUninstall().
// https://dev.1c-bitrix.ru/learning/course/index.php?COURSE_ID=43&LESSON_ID=3475
// https://dev.1c-bitrix.ru/learning/course/?COURSE_ID=101&TYPE=Y (partner module ids: partner.module)

// Not PSR-1 on purpose: Bitrix finds the installer by this class name and calls these method names.
// phpcs:disable PSR1.Files.SideEffects, PSR1.Classes.ClassDeclaration.MissingNamespace
// phpcs:disable Squiz.Classes.ValidClassName.NotCamelCaps, PSR1.Methods.CamelCapsMethodName.NotCamelCaps

use Bitrix\Main\Config\Option;
use Bitrix\Main\Localization\Loc;
use Bitrix\Main\ModuleManager;
use Bxsync\Forwarder\HandlerRegistry;
use Bxsync\Forwarder\Outbox;
use Bxsync\Forwarder\OutboxStore;

Loc::loadMessages(__FILE__);

if (class_exists('bxsync_forwarder')) {
    return;
}

class bxsync_forwarder extends CModule
{
    /** @var string */
    public $MODULE_ID = 'bxsync.forwarder';
    /** @var string */
    public $MODULE_VERSION;
    /** @var string */
    public $MODULE_VERSION_DATE;
    /** @var string */
    public $MODULE_NAME;
    /** @var string */
    public $MODULE_DESCRIPTION;
    /** @var string */
    public $PARTNER_NAME;
    /** @var string */
    public $PARTNER_URI;
    /** @var string */
    public $MODULE_GROUP_RIGHTS = 'N';

    public function __construct()
    {
        $arModuleVersion = [];
        include __DIR__ . '/version.php';
        $this->MODULE_VERSION = $arModuleVersion['VERSION'];
        $this->MODULE_VERSION_DATE = $arModuleVersion['VERSION_DATE'];
        $this->MODULE_NAME = (string) Loc::getMessage('BXSYNC_FORWARDER_MODULE_NAME');
        $this->MODULE_DESCRIPTION = (string) Loc::getMessage('BXSYNC_FORWARDER_MODULE_DESCRIPTION');
        $this->PARTNER_NAME = (string) Loc::getMessage('BXSYNC_FORWARDER_PARTNER_NAME');
        $this->PARTNER_URI = '';
    }

    public function DoInstall()
    {
        ModuleManager::registerModule($this->MODULE_ID);
        $this->InstallDB();
        $this->InstallEvents();

        return true;
    }

    public function DoUninstall()
    {
        $this->UnInstallEvents();
        $this->UnInstallDB();
        // The tokens go with the module: nothing secret stays behind in b_option.
        Option::delete($this->MODULE_ID);
        ModuleManager::unRegisterModule($this->MODULE_ID);

        return true;
    }

    /** Hooks the shop's and/or the CRM's events, whichever of sale and crm this kernel has. */
    /**
     * The outbox table, and the agent that sends what it holds every minute. CAgent::AddAgent(name, module,
     * period "N": the next run is counted from the end of the last one, interval):
     * https://dev.1c-bitrix.ru/api_help/main/reference/cagent/addagent.php; RemoveModuleAgents on uninstall:
     * https://dev.1c-bitrix.ru/api_help/main/reference/cagent/index.php
     */
    public function InstallDB()
    {
        self::loadRegistry();
        OutboxStore::install();
        \CAgent::RemoveAgent(Outbox::AGENT, $this->MODULE_ID); // installing again: still one agent
        \CAgent::AddAgent(Outbox::AGENT, $this->MODULE_ID, 'N', Outbox::AGENT_INTERVAL_SECONDS);

        return true;
    }

    public function UnInstallDB()
    {
        self::loadRegistry();
        \CAgent::RemoveModuleAgents($this->MODULE_ID);
        OutboxStore::uninstall();

        return true;
    }

    public function InstallEvents()
    {
        self::loadRegistry();
        HandlerRegistry::registerForInstalledModules();

        return true;
    }

    public function UnInstallEvents()
    {
        self::loadRegistry();
        HandlerRegistry::unregisterAll();

        return true;
    }

    /** The module is not registered yet while it installs, so its autoloader is not there: load what we need. */
    private static function loadRegistry(): void
    {
        require_once dirname(__DIR__) . '/lib/settings.php';
        require_once dirname(__DIR__) . '/lib/handlerregistry.php';
        require_once dirname(__DIR__) . '/lib/log.php';
        require_once dirname(__DIR__) . '/lib/outboxtable.php';
        require_once dirname(__DIR__) . '/lib/outboxstore.php';
        require_once dirname(__DIR__) . '/lib/outbox.php';
    }
}
