<?php

// Minimal stand-ins for the 1C-Bitrix kernel (module main), enough to install the forwarder module, fire events at it
// and end a hit the way a real kernel does. Behaviour copied from the public kernel copy
// https://github.com/avshatalov48/bitrix-core-business (modules/main/lib/eventmanager.php, application.php,
// classes/general/module.php): VERSION 2 handlers get the Event, VERSION 1 handlers and ExecuteModuleEventEx get the
// parameters in order; handler exceptions propagate into the caller; background jobs run in terminate().
// The "database" (b_module, b_module_to_module, b_option, b_event_log) is a JSON file, so an install in one PHP
// process is seen by the hits that follow in others.

namespace Bitrix\Main {

    final class KernelState
    {
        /** @var array<string, mixed>|null */
        private static $state;

        /** @return array<string, mixed> */
        public static function &get(): array
        {
            if (self::$state === null) {
                $path = getenv('BXSYNC_KERNEL_STATE');
                $raw = $path && is_file($path) ? file_get_contents($path) : '';
                self::$state = $raw ? json_decode($raw, true) : [];
                self::$state += ['modules' => ['main'], 'handlers' => [], 'options' => [], 'eventlog' => []];
            }

            return self::$state;
        }

        public static function save(): void
        {
            $path = getenv('BXSYNC_KERNEL_STATE');
            if ($path) {
                file_put_contents($path, json_encode(self::get(), JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE));
            }
        }
    }

    final class Loader
    {
        /** @var array<string, string> lower-case class => file */
        private static $classes = [];
        /** @var bool */
        private static $registered = false;
        /** @var array<string, bool> */
        private static $included = [];

        public static function modulesRoot(): string
        {
            return (string) getenv('BXSYNC_MODULES_ROOT');
        }

        public static function includeModule($moduleName): bool
        {
            if ($moduleName === 'main') {
                return true;
            }
            if (!ModuleManager::isModuleInstalled($moduleName)) {
                return false;
            }
            if (!isset(self::$included[$moduleName])) {
                self::$included[$moduleName] = true;
                $include = self::modulesRoot() . '/' . $moduleName . '/include.php';
                if (is_file($include)) {
                    include_once $include;
                }
            }

            return true;
        }

        public static function registerAutoLoadClasses($moduleName, array $classes): void
        {
            $base = $moduleName === null ? '' : self::modulesRoot() . '/' . $moduleName . '/';
            foreach ($classes as $class => $file) {
                self::$classes[strtolower(ltrim($class, '\\'))] = $base . $file;
            }
            if (!self::$registered) {
                self::$registered = true;
                spl_autoload_register(static function (string $class): void {
                    $file = self::$classes[strtolower(ltrim($class, '\\'))] ?? null;
                    if ($file !== null && is_file($file)) {
                        require_once $file;
                    }
                });
            }
        }
    }

    final class ModuleManager
    {
        public static function isModuleInstalled($moduleName): bool
        {
            return in_array($moduleName, KernelState::get()['modules'], true);
        }

        public static function registerModule($moduleName): void
        {
            $state = &KernelState::get();
            if (!in_array($moduleName, $state['modules'], true)) {
                $state['modules'][] = $moduleName;
            }
            KernelState::save();
        }

        public static function unRegisterModule($moduleName): void
        {
            $state = &KernelState::get();
            $state['modules'] = array_values(array_diff($state['modules'], [$moduleName]));
            KernelState::save();
        }
    }

    class Event
    {
        /** @var string */
        protected $moduleId;
        /** @var string */
        protected $type;
        /** @var array<string, mixed> */
        protected $parameters;
        /** @var array|null */
        protected $filter;
        /** @var list<EventResult> */
        protected $results = [];

        public function __construct($moduleId, $type, $parameters = [], $filter = null)
        {
            $this->moduleId = $moduleId;
            $this->type = $type;
            $this->parameters = $parameters;
            $this->filter = $filter;
        }

        public function getModuleId()
        {
            return $this->moduleId;
        }

        public function getEventType()
        {
            return $this->type;
        }

        public function getParameters()
        {
            return $this->parameters;
        }

        public function getParameter($key)
        {
            return $this->parameters[$key] ?? null;
        }

        public function getFilter()
        {
            return $this->filter;
        }

        public function addResult(EventResult $result): void
        {
            $this->results[] = $result;
        }

        public function getResults()
        {
            return $this->results;
        }

        public function send($sender = null): void
        {
            EventManager::getInstance()->send($this);
        }
    }

    class EventResult
    {
        const UNDEFINED = 0;
        const SUCCESS = 1;
        const ERROR = 2;

        /** @var int */
        protected $type;
        /** @var mixed */
        protected $parameters;
        /** @var string|null */
        protected $moduleId;

        public function __construct($type, $parameters = null, $moduleId = null)
        {
            $this->type = $type;
            $this->parameters = $parameters;
            $this->moduleId = $moduleId;
        }

        public function getType()
        {
            return $this->type;
        }
    }

    final class EventManager
    {
        /** @var EventManager|null */
        private static $instance;

        public static function getInstance(): self
        {
            return self::$instance ?? (self::$instance = new self());
        }

        public function registerEventHandler($fromModuleId, $eventType, $toModuleId, $toClass = '', $toMethod = '', $sort = 100, $toPath = '', $toMethodArg = []): void
        {
            $this->register($fromModuleId, $eventType, $toModuleId, $toClass, $toMethod, (int) $sort, 2);
        }

        public function registerEventHandlerCompatible($fromModuleId, $eventType, $toModuleId, $toClass = '', $toMethod = '', $sort = 100, $toPath = '', $toMethodArg = []): void
        {
            $this->register($fromModuleId, $eventType, $toModuleId, $toClass, $toMethod, (int) $sort, 1);
        }

        public function unRegisterEventHandler($fromModuleId, $eventType, $toModuleId, $toClass = '', $toMethod = '', $toPath = '', $toMethodArg = []): void
        {
            $state = &KernelState::get();
            $state['handlers'] = array_values(array_filter($state['handlers'], static function (array $row) use ($fromModuleId, $eventType, $toModuleId, $toClass, $toMethod): bool {
                return !($row['FROM_MODULE_ID'] === $fromModuleId && $row['MESSAGE_ID'] === $eventType
                    && $row['TO_MODULE_ID'] === $toModuleId && $row['TO_CLASS'] === $toClass && $row['TO_METHOD'] === $toMethod);
            }));
            KernelState::save();
        }

        public function findEventHandlers($eventModuleId, $eventType, array $filter = null): array
        {
            $rows = [];
            foreach (KernelState::get()['handlers'] as $row) {
                if (strtoupper($row['FROM_MODULE_ID']) === strtoupper($eventModuleId) && strtoupper($row['MESSAGE_ID']) === strtoupper($eventType)
                    // b_module_to_module is joined with b_module: handlers of uninstalled modules never run.
                    && ModuleManager::isModuleInstalled($row['TO_MODULE_ID'])) {
                    $rows[] = $row;
                }
            }
            usort($rows, static function (array $a, array $b): int {
                return $a['SORT'] <=> $b['SORT'];
            });

            return $rows;
        }

        public function send(Event $event): void
        {
            foreach ($this->findEventHandlers($event->getModuleId(), $event->getEventType()) as $handler) {
                if (!Loader::includeModule($handler['TO_MODULE_ID'])) {
                    continue;
                }
                $args = $handler['VERSION'] > 1 ? [$event] : array_values($event->getParameters());
                if (!class_exists($handler['TO_CLASS'])) {
                    continue;
                }
                $result = call_user_func_array([$handler['TO_CLASS'], $handler['TO_METHOD']], $args);
                if ($result !== null) {
                    $event->addResult($result instanceof EventResult ? $result : new EventResult(EventResult::UNDEFINED, $result));
                }
            }
        }

        private function register(string $fromModuleId, string $eventType, string $toModuleId, string $toClass, string $toMethod, int $sort, int $version): void
        {
            $state = &KernelState::get();
            foreach ($state['handlers'] as $row) {
                if ($row['FROM_MODULE_ID'] === $fromModuleId && $row['MESSAGE_ID'] === $eventType && $row['TO_MODULE_ID'] === $toModuleId
                    && $row['TO_CLASS'] === $toClass && $row['TO_METHOD'] === $toMethod && $row['VERSION'] === $version) {
                    return; // INSERT IGNORE on UNIQUE_ID
                }
            }
            $state['handlers'][] = [
                'FROM_MODULE_ID' => $fromModuleId,
                'MESSAGE_ID' => $eventType,
                'TO_MODULE_ID' => $toModuleId,
                'TO_CLASS' => $toClass,
                'TO_METHOD' => $toMethod,
                'SORT' => $sort,
                'VERSION' => $version,
            ];
            KernelState::save();
        }
    }

    abstract class KernelApplication
    {
        /** @var static|null */
        private static $instance;
        /** @var list<array{0: callable, 1: array}> */
        protected $backgroundJobs = [];
        /** @var Context|null */
        private $context;

        public static function getInstance()
        {
            return self::$instance ?? (self::$instance = new Application());
        }

        /** The database connection (orm.php): tables in the JSON state. */
        public static function getConnection($name = '')
        {
            return new \Bitrix\Main\DB\Connection();
        }

        public function getContext(): Context
        {
            return $this->context ?? ($this->context = new Context());
        }

        /** The real one sends the response (fastcgi_finish_request), runs the jobs, then exit()s; this one returns. */
        public function terminate($status = 0): void
        {
            while ($this->backgroundJobs) {
                $jobs = $this->backgroundJobs;
                $this->backgroundJobs = [];
                foreach ($jobs as $job) {
                    call_user_func_array($job[0], $job[1]);
                }
            }
        }
    }

    if (getenv('BXSYNC_STUB_OLD_KERNEL')) {
        // A kernel from before Application::addBackgroundJob (or a script that never reaches terminate()).
        final class Application extends KernelApplication
        {
        }
    } else {
        final class Application extends KernelApplication
        {
            public function addBackgroundJob(callable $job, array $args = [], $priority = 100)
            {
                $this->backgroundJobs[] = [$job, $args];

                return $this;
            }
        }
    }

    final class Context
    {
        /** @var HttpRequest */
        private $request;

        public function getRequest(): HttpRequest
        {
            return $this->request ?? ($this->request = new HttpRequest());
        }
    }

    final class HttpRequest
    {
        public function isPost(): bool
        {
            return ($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST';
        }

        public function getPost($name)
        {
            return $_POST[$name] ?? null;
        }
    }
}

namespace Bitrix\Main\Config {

    use Bitrix\Main\KernelState;

    final class Option
    {
        public static function get($moduleId, $name, $default = '', $siteId = false)
        {
            $value = KernelState::get()['options'][$moduleId][$name] ?? null;

            return $value === null ? $default : $value;
        }

        public static function set($moduleId, $name, $value = '', $siteId = ''): void
        {
            $state = &KernelState::get();
            $state['options'][$moduleId][$name] = (string) $value;
            KernelState::save();
        }

        public static function delete($moduleId, array $filter = []): void
        {
            $state = &KernelState::get();
            unset($state['options'][$moduleId]);
            KernelState::save();
        }
    }
}

namespace Bitrix\Main\Localization {

    final class Loc
    {
        /** @var array<string, string> */
        private static $messages = [];

        /** lang/<language>/<path of the file within its module>, as the kernel looks them up. */
        public static function loadMessages($file): void
        {
            $file = str_replace('\\', '/', (string) $file);
            $root = rtrim(str_replace('\\', '/', \Bitrix\Main\Loader::modulesRoot()), '/') . '/';
            if (strpos($file, $root) !== 0) {
                return;
            }
            [$module, $relative] = explode('/', substr($file, strlen($root)), 2);
            $langFile = $root . $module . '/lang/' . LANGUAGE_ID . '/' . $relative;
            if (is_file($langFile)) {
                $MESS = [];
                include $langFile;
                self::$messages = $MESS + self::$messages;
            }
        }

        public static function getMessage($code, $replace = null, $language = null)
        {
            $message = self::$messages[$code] ?? null;
            if ($message !== null && is_array($replace)) {
                $message = strtr($message, $replace);
            }

            return $message;
        }
    }
}

namespace {

    use Bitrix\Main\EventManager;
    use Bitrix\Main\KernelState;
    use Bitrix\Main\Loader;

    class CModule
    {
        public $MODULE_ID;
        public $MODULE_NAME;
        public $MODULE_DESCRIPTION;
        public $MODULE_VERSION;
        public $MODULE_VERSION_DATE;
        public $MODULE_GROUP_RIGHTS;
        public $PARTNER_NAME;
        public $PARTNER_URI;

        public function IsInstalled()
        {
            return \Bitrix\Main\ModuleManager::isModuleInstalled($this->MODULE_ID);
        }
    }

    class CEventLog
    {
        public static function Add(array $fields)
        {
            $state = &KernelState::get();
            $state['eventlog'][] = $fields;
            KernelState::save();

            return count($state['eventlog']);
        }
    }

    /** The old API crm uses for OnAfterCrmDeal*: GetModuleEvents() + ExecuteModuleEventEx($handler, [&$fields]). */
    function GetModuleEvents($moduleId, $messageId, $returnArray = false)
    {
        return EventManager::getInstance()->findEventHandlers($moduleId, $messageId);
    }

    function ExecuteModuleEventEx($handler, $params = [])
    {
        if (!Loader::includeModule($handler['TO_MODULE_ID'])) {
            return null;
        }
        class_exists($handler['TO_CLASS']);

        return call_user_func_array([$handler['TO_CLASS'], $handler['TO_METHOD']], $params);
    }
}
