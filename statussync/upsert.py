"""Rows inserted or updated in one statement (`INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING`).

The webhook's hot path stores an event and requests a job per request; Django's ORM has no upsert with an
expression update (`duplicates + 1`) or a partial index as its conflict target, so these two statements are
written here once (docs/decisions.md "Webhook intake: one upsert per row, coalesced wake-ups"). SQLite 3.24+
and PostgreSQL both take this syntax (https://www.sqlite.org/lang_upsert.html,
https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT). On PostgreSQL, several of them go
as one statement, each a data-modifying WITH query
(https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING): one round trip, and
atomic without a transaction block around it. There it is also a prepared statement
(`BXSYNC_WEBHOOK_PREPARED`, `_prepared_cursor`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections, models
from django.db.backends.utils import CursorWrapper


@dataclass(frozen=True)
class Upsert:
    """Insert `row` (field name → value) into `model`'s table or, when it collides on `conflict` (the conflict
    target, e.g. `(dedupe_key)`), apply `update` (a SET list in which `{table}` names the table); the
    `returning` column of the row inserted or updated is its result."""

    model: type[models.Model]
    row: dict[str, Any]
    conflict: str
    update: str
    returning: str

    def sql(self) -> tuple[str, list[Any]]:
        """The statement and its parameters."""
        sql, fields = _statement(
            self.model, tuple(self.row), self.conflict, self.update, self.returning, connection.vendor
        )
        # `connection` looks this thread's connection up at each use: once here, not once per value.
        db = connections[DEFAULT_DB_ALIAS]
        values = zip(fields, self.row.values(), strict=True)
        return sql, [field.get_db_prep_save(value, db) for field, value in values]


@functools.lru_cache(maxsize=64)
def _statement(
    model: type[models.Model], names: tuple[str, ...], conflict: str, update: str, returning: str, vendor: str
) -> tuple[str, tuple[models.Field, ...]]:
    """The statement's text and the fields of its values, the same for every row of a caller: built once
    (building them per webhook cost 125 µs of CPU, 42 µs now: about a tenth of a webhook's CPU in-process).
    `vendor` is in the key because the quoting is the database's."""
    by_name = {f.name: f for f in model._meta.concrete_fields}
    fields = tuple(by_name[name] for name in names)
    table = model._meta.db_table
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    # Table and column names come from the model and the callers' constants; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(names))}) "  # noqa: S608
        f"ON CONFLICT {conflict} DO UPDATE SET {update.format(table=table)} "
        f"RETURNING {returning}"
    )
    return sql, fields


def upserts_atomic() -> bool:
    """Whether `upserts_run` is atomic by itself (one statement on PostgreSQL); elsewhere the caller wraps it
    in a transaction."""
    return connection.vendor == "postgresql"


def upserts_run(upserts: list[Upsert]) -> list[Any]:
    """Each upsert's `returning` value, in order: on PostgreSQL in one statement, elsewhere one after
    another.

    On PostgreSQL outside a transaction, a statement that fails because the database dropped the connection
    (a restart, a failover) is sent once more on a new one: the web process keeps its connection between
    webhooks without a `SELECT 1` before each (bxsync_project/wsgi.py), so a dropped connection is found
    here. The statement is atomic, so it either stored nothing or, if only its answer was lost, stored the
    event that the second try counts as a duplicate of it."""
    try:
        return _upserts_execute(upserts)
    except (OperationalError, InterfaceError):
        if not upserts_atomic() or connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        return _upserts_execute(upserts)


def _upserts_execute(upserts: list[Upsert]) -> list[Any]:
    prepared = upserts_atomic() and settings.BXSYNC_WEBHOOK_PREPARED
    with _prepared_cursor() if prepared else connection.cursor() as cursor:
        if len(upserts) > 1 and upserts_atomic():
            parts, params = [], []
            for n, upsert in enumerate(upserts):
                sql, values = upsert.sql()
                parts.append(f"u{n} AS ({sql})")
                params += values
            results = ", ".join(
                f"(SELECT {u.returning} FROM u{n})"  # noqa: S608 - the callers' constants, as above
                for n, u in enumerate(upserts)
            )
            cursor.execute(f"WITH {', '.join(parts)} SELECT {results}", params)
            return list(cursor.fetchone())
        answers = []
        for upsert in upserts:
            cursor.execute(*upsert.sql())
            answers.append(cursor.fetchone()[0])
        return answers


def _prepared_cursor() -> CursorWrapper:
    """A cursor of this thread's PostgreSQL connection whose statements are sent with their parameters apart
    and prepared on the server (psycopg's `prepare=True`,
    https://www.psycopg.org/psycopg3/docs/advanced/prepare.html), wrapped as Django wraps its own (query
    logging, execute wrappers, Django's database errors).

    Django's cursors bind parameters into the text on the client and never prepare, for the sake of
    connection poolers (https://docs.djangoproject.com/en/5.2/ref/databases/#server-side-parameters-binding).
    The webhook's statement is the same text every time. Prepared, PostgreSQL no longer parses and plans its
    two upserts for each webhook and the web process no longer quotes the values into it: 0.28 ms less of
    the server's CPU and 0.12 ms less of the web process's a webhook, measured one at a time
    (docs/benchmarks.md "Scaled intake: the webhook's statement prepared"). The prepared statement lives
    with the connection: a new connection prepares it again."""
    connection.ensure_connection()
    database = connection.connection
    # Django connects with preparing turned off (`prepare_threshold` None), which psycopg applies even to
    # `prepare=True`. Its own cursors bind on the client and never prepare whatever the threshold, so
    # turning it on touches only cursors made here.
    if database.prepare_threshold is None:
        database.prepare_threshold = 0
    with connection.wrap_database_errors:
        raw = _prepared_cursor_class()(database)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


@functools.cache
def _prepared_cursor_class() -> type:
    """Django's server-side binding cursor, each statement prepared; made once (the PostgreSQL backend is
    imported only on PostgreSQL)."""
    # Defined only when psycopg 3 is installed, which django-stubs cannot know.
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            return super().execute(query, params, prepare=True)

    return PreparedCursor
