"""PHP-style query strings: ``http_build_query`` for batch sub-commands and its inverse for form bodies.

Bitrix is PHP: a batch sub-command is ``"method?<query>"`` parsed with PHP's rules
[R: settings/how-to-call-rest-api/batch.md], and outgoing events arrive as
``application/x-www-form-urlencoded`` with bracket keys like ``data[FIELDS][ID]``
[R: api-reference/events/index.md].
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus, unquote_plus

__all__ = ["http_build_query", "parse_bracket_query", "unflatten"]

# PHP's max_input_nesting_level defaults to 64; nothing legitimate from Bitrix goes deeper than a few levels.
MAX_DEPTH = 32
_KEY = re.compile(r"(?P<base>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _urlencode(value: str) -> str:
    # PHP urlencode(): all but [A-Za-z0-9_.-] becomes %XX, space '+'. Python also keeps '~', PHP does not.
    return quote_plus(value, safe="").replace("~", "%7E")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"  # PHP casts true/false to "1"/"0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot encode {value!r}")
        # PHP 8 prints floats with the shortest round-trip form and drops a trailing ".0".
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    raise TypeError(f"cannot encode {type(value).__name__} in a query string; convert it to str first")


def _pairs(prefix: str, value: Any) -> Iterable[tuple[str, str]]:
    if value is None:  # PHP skips nulls (the list index is still consumed)
        return
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        yield prefix, _scalar(value)
        return
    for key, item in items:  # an empty dict/list yields nothing at all, as in PHP
        yield from _pairs(f"{prefix}[{key}]", item)


def http_build_query(params: Mapping[str, Any]) -> str:
    """Encode ``params`` exactly like PHP's ``http_build_query`` (RFC 1738, ``&`` separator).

    Nested mappings and lists become bracket keys (``fields[STAGE_ID]``, ``select[0]``) with the brackets
    percent-encoded; ``True``/``False`` -> ``1``/``0``; ``None`` and empty containers are omitted.
    """
    out = []
    for key, value in params.items():
        for name, text in _pairs(str(key), value):
            out.append(f"{_urlencode(name)}={_urlencode(text)}")
    return "&".join(out)


def _split_key(key: str) -> tuple[str, list[str]]:
    match = _KEY.fullmatch(key)
    if match is None:
        raise ValueError(f"malformed query key {key!r}")
    segments = _SEGMENT.findall(match["rest"])
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"query key {key[:50]!r}... is nested deeper than {MAX_DEPTH} levels")
    return match["base"], segments


def unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn decoded ``(key, value)`` pairs with PHP bracket keys into nested dicts/lists.

    ``a[b][c]=1`` -> ``{"a": {"b": {"c": "1"}}}``; ``a[]=1&a[]=2`` -> ``{"a": ["1", "2"]}``; explicit
    numeric keys stay strings (``a[0]=x`` -> ``{"a": {"0": "x"}}``). A repeated plain key keeps the last
    value, as in PHP.
    Malformed keys (``a[b``, ``a]``, ``[a]``) and conflicting shapes (``a=1&a[b]=2``, ``a[]=1&a[x]=2``)
    raise ``ValueError``, where PHP would silently guess.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        base, segments = _split_key(key)
        path = [base, *segments]
        node: dict[str, Any] | list[Any] = root
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            child: Any = value if last else ([] if path[depth + 1] == "" else {})
            if isinstance(node, list):
                if segment != "":
                    raise ValueError(f"query key {key!r} mixes [] with named keys")
                node.append(child)
                node = child
                continue
            if segment == "":
                raise ValueError(f"query key {key!r} mixes [] with named keys")
            existing = node.get(segment)
            if last:
                if isinstance(existing, dict | list):
                    raise ValueError(f"query key {key!r} conflicts with a nested key of the same name")
                node[segment] = value
            elif existing is None:
                node[segment] = child
                node = child
            elif isinstance(existing, type(child)):
                node = existing
            else:
                raise ValueError(f"query key {key!r} conflicts with an earlier key of another shape")
    return root


def parse_bracket_query(qs: str) -> dict[str, Any]:
    """Parse an urlencoded query string or form body with PHP bracket keys into nested dicts/lists.

    The inverse of :func:`http_build_query` (values come back as strings); :func:`unflatten` has the rules.
    """
    pairs = []
    for part in qs.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return unflatten(pairs)
