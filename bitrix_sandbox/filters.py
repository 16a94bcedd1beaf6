"""List-method semantics shared by ``crm.deal.list`` and ``sale.*.list``: filter prefixes, order, paging.

[docs/bitrix.md "Lists"] prefixes ``>= > <= < @ !@ % =% %= = != !`` (+ ``!%``,
``!=%``, ``!%=`` for sale); no prefix means equality; ``@`` is IN with an array, and so is ``=`` with an
array (the sale docs: it "works with arrays too"). Many entities per command is ``{"@ID": [ids]}``
(``@id``, ``@orderId`` on the shop). Page size is fixed at 50, ``start=(N-1)*50``; ``total`` always,
``next`` only when more rows exist. ``start=-1`` skips the count query: the first 50 rows, ``total`` 0 and
no ``next``, and the caller pages with ``>ID`` (the documentation's sample answer shows ``[total] => 0``)
[docs/bitrix.md "Lists"].

Comparisons coerce both sides by the field's declared type, so ``{">ID": "10"}`` compares numbers and
``{">DATE_MODIFY": "2024-08-30T14:00:00+03:00"}`` compares datetimes. A datetime in a filter must have the
documented form ``YYYY-MM-DDThh:mm:ss±hh:mm`` (api-reference/data-types.md): anything else (microseconds,
no offset, a bare date, ``Z``) is refused, see ``filter_datetimes_check`` [docs/bitrix.md "Dates in filters"].
Filter keys naming unknown fields are ignored, as the legacy CRM list does; LIKE on stage fields is not
special-cased (Bitrix says LIKE does not work on ``crm_status`` fields — don't rely on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .store import PortalClock

PAGE_SIZE = 50

# Longest prefixes first so "!=%" is not read as "!" + "=%".
_PREFIXES = ("!=%", "!%=", "!%", ">=", "<=", "=%", "%=", "!@", "!=", ">", "<", "=", "!", "@", "%")

FieldTypes = dict[str, str]  # field name -> "int" | "float" | "str" | "datetime"


class FilterError(ValueError):
    """A filter/order parameter of the wrong shape."""


class FilterDateError(FilterError):
    """A datetime in a filter not in the documented form; each portal answers it with its list error."""


# api-reference/data-types.md: datetime is `YYYY-MM-DDThh:mm:ss±hh:mm`, e.g. 2023-12-28T14:05:48+03:00.
DOCUMENTED_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


def split_prefix(key: str) -> tuple[str, str]:
    """``">=DATE_MODIFY"`` → ``(">=", "DATE_MODIFY")``."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return prefix, key[len(prefix) :]
    return "", key


def _coerce(value: Any, kind: str, clock: PortalClock) -> Any:
    if value is None:
        return None
    if kind == "int":
        try:
            return int(float(value)) if not isinstance(value, bool) else int(value)
        except (TypeError, ValueError):
            return None
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if kind == "datetime":
        return clock.parse(value)
    return str(value)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value is False


def _like(pattern: str, value: str) -> bool:
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("%")) + "$"
    return re.match(regex, value, flags=re.IGNORECASE | re.DOTALL) is not None


def _compare(prefix: str, actual: Any, expected: Any, kind: str, clock: PortalClock) -> bool:
    if prefix in ("@", "!@") or (prefix in ("", "=", "!", "!=") and isinstance(expected, (list, tuple))):
        values = expected if isinstance(expected, (list, tuple)) else [expected]
        have = _coerce(actual, kind, clock)
        hit = any(have is not None and have == _coerce(v, kind, clock) for v in values)
        return not hit if prefix.startswith("!") else hit
    if prefix in ("%", "!%", "=%", "%=", "!=%", "!%="):
        text = "" if actual is None else str(actual)
        needle = str(expected)
        hit = needle.lower() in text.lower() if prefix in ("%", "!%") else _like(needle, text)
        return not hit if prefix.startswith("!") else hit
    if prefix in ("", "="):
        if _is_empty(expected):
            return _is_empty(actual)
        have, want = _coerce(actual, kind, clock), _coerce(expected, kind, clock)
        return have is not None and have == want
    if prefix in ("!", "!="):
        if _is_empty(expected):
            return not _is_empty(actual)
        have, want = _coerce(actual, kind, clock), _coerce(expected, kind, clock)
        return have != want
    have, want = _coerce(actual, kind, clock), _coerce(expected, kind, clock)
    if have is None or want is None:
        return False
    if prefix == ">":
        return have > want
    if prefix == ">=":
        return have >= want
    if prefix == "<":
        return have < want
    if prefix == "<=":
        return have <= want
    raise FilterError(f"unsupported filter prefix {prefix!r}")


def matches(row: dict[str, Any], flt: dict[str, Any], types: FieldTypes, clock: PortalClock) -> bool:
    """True when ``row`` satisfies every condition of ``flt``."""
    for key, expected in flt.items():
        prefix, field = split_prefix(str(key))
        if field not in types:
            continue
        if not _compare(prefix, row.get(field), expected, types[field], clock):
            return False
    return True


def filter_rows(
    rows: Iterable[dict[str, Any]], flt: Any, types: FieldTypes, clock: PortalClock
) -> list[dict[str, Any]]:
    """Rows matching ``flt`` (an object; a non-object raises FilterError like Bitrix's 400)."""
    if flt in (None, "", []):
        return list(rows)
    if not isinstance(flt, dict):
        raise FilterError("Parameter 'filter' must be array.")
    filter_datetimes_check(flt, types)
    return [row for row in rows if matches(row, flt, types, clock)]


def filter_datetimes_check(flt: dict[str, Any], types: FieldTypes) -> None:
    """Refuse a datetime field's filter value that is not in the documented form (an empty value, "is
    empty", is no datetime and passes). What a real portal does with another form is unconfirmed
    [docs/bitrix.md "Dates in filters"]; the sandbox refuses, so a client sending one is caught."""
    for key, expected in flt.items():
        prefix, name = split_prefix(str(key))
        if types.get(name) != "datetime" or prefix in ("%", "!%", "=%", "%=", "!=%", "!%="):
            continue
        values = expected if isinstance(expected, (list, tuple)) else [expected]
        for value in values:
            if _is_empty(value):
                continue
            if not isinstance(value, str) or not DOCUMENTED_DATETIME.fullmatch(value):
                raise FilterDateError(f"{key}: {value!r} is not a datetime YYYY-MM-DDThh:mm:ss±hh:mm")


def order_rows(
    rows: list[dict[str, Any]], order: Any, types: FieldTypes, clock: PortalClock, default_key: str
) -> list[dict[str, Any]]:
    """Sort by ``order`` (``{"FIELD": "ASC"|"DESC"}``), then by ``default_key`` ascending."""
    if order in (None, "", []):
        order = {}
    if not isinstance(order, dict):
        raise FilterError("Parameter 'order' must be array.")
    result = sorted(rows, key=lambda r: _sort_key(r.get(default_key), types.get(default_key, "str"), clock))
    for field, direction in reversed(list(order.items())):
        if field not in types:
            continue
        kind = types[field]
        result.sort(
            key=lambda r, f=field, k=kind: _sort_key(r.get(f), k, clock),
            reverse=str(direction).upper() == "DESC",
        )
    return result


def _sort_key(value: Any, kind: str, clock: PortalClock) -> tuple[int, Any]:
    coerced = _coerce(value, kind, clock)
    if coerced is None:
        return (0, 0)
    if isinstance(coerced, datetime):
        return (1, coerced.timestamp())
    return (1, coerced)


def parse_start(value: Any) -> int:
    """The ``start`` parameter as an int (missing/garbage → 0; -1 means "no count")."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def paginate(rows: list[Any], start: Any) -> tuple[list[Any], int | None, int | None]:
    """Return (page, total, next). ``start=-1`` gives the first page with ``total`` 0 and no ``next``.

    That is what Bitrix answers without the count query [docs/bitrix.md "Lists"]: a client
    that trusted ``total`` there would think the list empty.
    """
    offset = parse_start(start)
    if offset == -1:
        return rows[:PAGE_SIZE], 0, None
    offset = max(offset, 0)
    page = rows[offset : offset + PAGE_SIZE]
    nxt = offset + PAGE_SIZE if offset + PAGE_SIZE < len(rows) else None
    return page, len(rows), nxt
