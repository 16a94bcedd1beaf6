"""One row inserted or updated in one statement (`INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING`).

The webhook's hot path stores an event and requests a job per request; Django's ORM has no upsert with an
expression update (`duplicates + 1`) or a partial index as its conflict target, so these two statements are
written here once (docs/decisions.md "Webhook intake: one upsert per row, coalesced wake-ups"). SQLite 3.24+
and PostgreSQL both take this syntax (https://www.sqlite.org/lang_upsert.html,
https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, models


def row_upsert(
    *, model: type[models.Model], row: dict[str, Any], conflict: str, update: str, returning: str
) -> Any:
    """Insert `row` (field name → value) into `model`'s table or, when it collides on `conflict` (the
    conflict target, e.g. `(dedupe_key)`), apply `update` (a SET list in which `{table}` names the table);
    return the `returning` column of the row inserted or updated."""
    fields = {f.name: f for f in model._meta.concrete_fields}
    values = [fields[name].get_db_prep_save(value, connection) for name, value in row.items()]
    table = model._meta.db_table
    columns = ", ".join(connection.ops.quote_name(fields[name].column) for name in row)
    # Table and column names come from the model and the callers' constants; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(row))}) "  # noqa: S608
        f"ON CONFLICT {conflict} DO UPDATE SET {update.format(table=table)} RETURNING {returning}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.fetchone()[0]
