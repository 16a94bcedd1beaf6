<?php

// Stand-ins for the kernel's D7 ORM (the subset the forwarder's outbox uses), the database connection and agents.
// Tables live in the same JSON "database" as the rest of the stub kernel (KernelState), each as its rows and its
// next id. Behaviour as documented: Entity\Base::createDbTable, Connection::isTableExists / dropTable
// (https://dev.1c-bitrix.ru/api_d7/bitrix/main/entity/base/createdbtable.php,
// https://dev.1c-bitrix.ru/api_d7/bitrix/main/db/connection/index.php); CAgent::AddAgent / RemoveAgent /
// RemoveModuleAgents (https://dev.1c-bitrix.ru/api_help/main/reference/cagent/index.php): an agent is a line of PHP
// the kernel evaluates, and the string it returns is its next run (nothing: it is removed).
// Using a table that was never created fails, as SQL would.

namespace Bitrix\Main\DB {

    use Bitrix\Main\KernelState;

    final class SqlQueryException extends \RuntimeException
    {
    }

    final class Connection
    {
        public function isTableExists($tableName): bool
        {
            return isset(KernelState::get()['tables'][$tableName]);
        }

        public function dropTable($tableName): void
        {
            $state = &KernelState::get();
            unset($state['tables'][$tableName]);
            KernelState::save();
        }

        public function createTable(string $tableName): void
        {
            $state = &KernelState::get();
            $state['tables'][$tableName] = ['rows' => [], 'next' => 1];
            KernelState::save();
        }

        /** @return array{rows: array<string, array<string, mixed>>, next: int} */
        public function &table(string $tableName): array
        {
            $state = &KernelState::get();
            if (!isset($state['tables'][$tableName])) {
                throw new SqlQueryException("Table '$tableName' doesn't exist");
            }
            if (getenv('BXSYNC_STUB_DB_DOWN')) {
                throw new SqlQueryException('MySQL server has gone away');
            }

            return $state['tables'][$tableName];
        }
    }

    final class Result
    {
        /** @var list<array<string, mixed>> */
        private $rows;

        public function __construct(array $rows)
        {
            $this->rows = array_values($rows);
        }

        public function fetch()
        {
            return array_shift($this->rows) ?? false;
        }
    }
}

namespace Bitrix\Main\Entity {

    use Bitrix\Main\Application;
    use Bitrix\Main\DB\Result as DbResult;
    use Bitrix\Main\KernelState;

    abstract class Field
    {
        /** @var string */
        public $name;
        /** @var array<string, mixed> */
        public $parameters;

        public function __construct($name, $parameters = [])
        {
            $this->name = $name;
            $this->parameters = $parameters;
        }
    }

    class IntegerField extends Field
    {
    }

    class StringField extends Field
    {
    }

    class TextField extends Field
    {
    }

    class Result
    {
        public function isSuccess(): bool
        {
            return true;
        }
    }

    final class AddResult extends Result
    {
        /** @var int */
        private $id;

        public function __construct(int $id)
        {
            $this->id = $id;
        }

        public function getId()
        {
            return $this->id;
        }
    }

    final class Base
    {
        /** @var string */
        private $class;

        private function __construct(string $class)
        {
            $this->class = ltrim($class, '\\');
        }

        public static function getInstance($entityName): self
        {
            return new self($entityName);
        }

        public function getDBTableName(): string
        {
            return ($this->class)::getTableName();
        }

        public function createDbTable(): void
        {
            Application::getConnection()->createTable($this->getDBTableName());
        }
    }

    abstract class DataManager
    {
        public static function getTableName()
        {
            return null;
        }

        public static function getMap()
        {
            return [];
        }

        public static function getEntity(): Base
        {
            return Base::getInstance(static::class);
        }

        public static function add(array $data): AddResult
        {
            $table = &Application::getConnection()->table(static::getTableName());
            $id = $table['next']++;
            $row = ['ID' => $id];
            foreach (static::getMap() as $field) {
                if ($field->name !== 'ID') {
                    $row[$field->name] = $data[$field->name] ?? ($field->parameters['default_value'] ?? null);
                }
            }
            $table['rows'][(string) $id] = $row;
            KernelState::save();

            return new AddResult($id);
        }

        public static function update($primary, array $data): Result
        {
            $table = &Application::getConnection()->table(static::getTableName());
            if (isset($table['rows'][(string) $primary])) {
                $table['rows'][(string) $primary] = $data + $table['rows'][(string) $primary];
                KernelState::save();
            }

            return new Result();
        }

        public static function delete($primary): Result
        {
            $table = &Application::getConnection()->table(static::getTableName());
            unset($table['rows'][(string) $primary]);
            KernelState::save();

            return new Result();
        }

        /** filter: ['=ID' => n] only; order: one field; limit; select. */
        public static function getList(array $parameters = []): DbResult
        {
            $rows = array_values(Application::getConnection()->table(static::getTableName())['rows']);
            foreach ($parameters['filter'] ?? [] as $key => $value) {
                $field = ltrim($key, '=');
                $rows = array_filter($rows, static function (array $row) use ($field, $value): bool {
                    return (string) $row[$field] === (string) $value;
                });
            }
            foreach ($parameters['order'] ?? [] as $field => $direction) {
                usort($rows, static function (array $a, array $b) use ($field, $direction): int {
                    return strtoupper($direction) === 'DESC' ? $b[$field] <=> $a[$field] : $a[$field] <=> $b[$field];
                });
            }
            if (isset($parameters['limit'])) {
                $rows = array_slice(array_values($rows), 0, (int) $parameters['limit']);
            }

            return new DbResult($rows);
        }

        public static function getCount($filter = []): int
        {
            return count(Application::getConnection()->table(static::getTableName())['rows']);
        }
    }
}

namespace {

    use Bitrix\Main\KernelState;
    use Bitrix\Main\Loader;

    class CAgent
    {
        public static function AddAgent($name, $module = '', $period = 'N', $interval = 86400, $datecheck = '', $active = 'Y', $next_exec = '', $sort = 100)
        {
            $state = &KernelState::get();
            $state['agents'][] = ['NAME' => $name, 'MODULE_ID' => $module, 'IS_PERIOD' => $period, 'AGENT_INTERVAL' => (int) $interval];
            KernelState::save();

            return count($state['agents']);
        }

        public static function RemoveAgent($name, $module = '', $user_id = false): void
        {
            $state = &KernelState::get();
            $state['agents'] = array_values(array_filter($state['agents'] ?? [], static function (array $agent) use ($name, $module): bool {
                return !($agent['NAME'] === $name && $agent['MODULE_ID'] === $module);
            }));
            KernelState::save();
        }

        public static function RemoveModuleAgents($module): void
        {
            $state = &KernelState::get();
            $state['agents'] = array_values(array_filter($state['agents'] ?? [], static function (array $agent) use ($module): bool {
                return $agent['MODULE_ID'] !== $module;
            }));
            KernelState::save();
        }

        /** What CAgent::CheckAgents does for each due agent: include its module, eval its line, keep what it returns. */
        public static function RunAll(): void
        {
            $state = &KernelState::get();
            foreach ($state['agents'] ?? [] as $index => $agent) {
                if ($agent['MODULE_ID'] !== '' && !Loader::includeModule($agent['MODULE_ID'])) {
                    continue;
                }
                $result = eval('return ' . $agent['NAME']);
                $state = &KernelState::get();
                if (is_string($result) && $result !== '') {
                    $state['agents'][$index]['NAME'] = $result;
                } else {
                    unset($state['agents'][$index]);
                }
            }
            $state['agents'] = array_values($state['agents'] ?? []);
            KernelState::save();
        }
    }
}
