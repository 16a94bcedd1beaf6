"""PHP-style bracket query strings (``a[b][]=1``), private to the sandbox.

The sandbox must run without the rest of bxsync, so it carries its own minimal parser and encoder instead of
importing ``statussync.bitrix.query``. Both follow PHP's ``parse_str`` / ``http_build_query``, which is what
Bitrix uses for form bodies and for ``batch`` sub-commands
[R: settings/how-to-call-rest-api/data-encoding.md].
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote_plus

_KEY_RE = re.compile(r"^([^\[\]]*)((?:\[[^\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\]]*)\]")


def parse_bracket_query(qs: str) -> dict[str, Any]:
    """Parse ``a[b][c]=1&l[]=x`` into nested dicts/lists like PHP ``parse_str`` does.

    Dicts whose keys are exactly ``0..n-1`` become lists (PHP arrays with sequential keys serialise as lists).
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(qs, keep_blank_values=True):
        match = _KEY_RE.match(raw_key)
        if not match or not match.group(1):
            # PHP keeps odd keys verbatim; so do we.
            root[raw_key] = value
            continue
        parts = [match.group(1), *_PART_RE.findall(match.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                # "[]" appends: the next free integer key, as PHP does.
                part = str(_next_index(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)


def _next_index(node: dict[str, Any]) -> int:
    ints = [int(k) for k in node if k.isdigit()]
    return max(ints) + 1 if ints else 0


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        keys = list(converted)
        if keys and all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
            return [converted[str(i)] for i in range(len(keys))]
        return converted
    return value


def http_build_query(params: dict[str, Any]) -> str:
    """Encode nested dicts/lists the way PHP ``http_build_query`` does (``fields%5BSTAGE_ID%5D=WON``)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(str(key), value, pairs)
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}[{k}]", v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif value is None:
        # PHP drops nulls from http_build_query.
        return
    elif isinstance(value, bool):
        out.append((prefix, "1" if value else "0"))
    else:
        out.append((prefix, str(value)))
