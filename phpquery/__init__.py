"""PHP's ``parse_str`` / ``http_build_query`` as Bitrix speaks them: nested parameters in flat bracket keys.

Bitrix is PHP. A ``batch`` sub-command is ``"method?<query>"`` read with PHP's rules
[docs/bitrix.md "Parameter encoding"], form bodies and query strings carry nested parameters as
``fields[STAGE_ID]=WON`` [docs/bitrix.md "Parameter encoding"], and outgoing events arrive as
``application/x-www-form-urlencoded`` with keys like ``data[FIELDS][ID]`` [docs/bitrix.md "Events"].

One codec for both sides of the wire: bxsync's client (``statussync.bitrix``) encodes batch commands and its
webhook intake parses event bodies; the emulated portals (``bitrix_sandbox``) parse what the client sends.
Standard library only, so the sandbox stays runnable without Django.

Parsing is stricter than PHP on purpose: where ``parse_str`` silently guesses (a malformed key,
``a=1&a[b]=2``, ``a[]=1&a[x]=2``), this raises ``ValueError``, so a client bug shows up as an error instead
of a quietly different request. ``ValueError`` is the only exception parsing raises, whatever the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus, unquote_plus

__all__ = ["MAX_DEPTH", "http_build_query", "parse_bracket_query", "php_lists", "unflatten"]

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


def http_build_query(params: Mapping[Any, Any]) -> str:
    """Encode ``params`` exactly like PHP's ``http_build_query`` (RFC 1738, ``&`` separator).

    Nested mappings and lists become bracket keys (``fields[STAGE_ID]``, ``select[0]``) with the brackets
    percent-encoded; ``True``/``False`` -> ``1``/``0``; ``None`` and empty containers are omitted. A value
    PHP would not see as a scalar (a datetime, an object) raises ``TypeError``; NaN and infinities raise
    ``ValueError``.
    """
    out = []
    for key, value in params.items():
        for name, text in _pairs(str(key), value):
            out.append(f"{_urlencode(name)}={_urlencode(text)}")
    return "&".join(out)


def _split_key(key: str) -> tuple[str, list[str]]:
    match = _KEY.fullmatch(key)
    if match is None:
        raise ValueError(f"malformed query key {key[:50]!r}")
    segments = _SEGMENT.findall(match["rest"])
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"query key {key[:50]!r}... is nested deeper than {MAX_DEPTH} levels")
    return match["base"], segments


def php_lists(value: Any) -> Any:
    """Turn every mapping whose keys are exactly ``"0", "1", … "n-1"`` in that order into a list, recursively.

    That is how PHP's ``json_encode`` writes such an array (and how a PHP method sees ``select[0]=ID`` and
    ``select[]=ID`` alike); the docs' own batch examples show it [docs/bitrix.md "Parameter encoding"].
    """
    if isinstance(value, list):
        return [php_lists(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: php_lists(item) for key, item in value.items()}
    if converted and list(converted) == [str(i) for i in range(len(converted))]:
        return list(converted.values())
    return converted


def unflatten(pairs: Iterable[tuple[str, str]], *, lists: bool = False) -> dict[str, Any]:
    """Turn decoded ``(key, value)`` pairs with PHP bracket keys into nested dicts/lists.

    ``a[b][c]=1`` -> ``{"a": {"b": {"c": "1"}}}``; ``a[]=1&a[]=2`` -> ``{"a": ["1", "2"]}``; explicit
    numeric keys stay strings (``a[0]=x`` -> ``{"a": {"0": "x"}}``) unless ``lists``, which reads them as PHP
    does (:func:`php_lists`: ``{"a": ["x"]}``). A repeated plain key keeps the last value, as in PHP.
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
                    raise ValueError(f"query key {key[:50]!r} mixes [] with named keys")
                node.append(child)
                node = child
                continue
            if segment == "":
                raise ValueError(f"query key {key[:50]!r} mixes [] with named keys")
            existing = node.get(segment)
            if last:
                if isinstance(existing, dict | list):
                    raise ValueError(f"query key {key[:50]!r} conflicts with a nested key of the same name")
                node[segment] = value
            elif existing is None:
                node[segment] = child
                node = child
            elif isinstance(existing, type(child)):
                node = existing
            else:
                raise ValueError(f"query key {key[:50]!r} conflicts with an earlier key of another shape")
    if lists:
        # The top level stays a mapping of parameter names, even for "0=a&1=b".
        return {name: php_lists(item) for name, item in root.items()}
    return root


def parse_bracket_query(qs: str, *, lists: bool = False) -> dict[str, Any]:
    """Parse an urlencoded query string or form body with PHP bracket keys into nested dicts/lists.

    The inverse of :func:`http_build_query` (values come back as strings); :func:`unflatten` has the rules
    and the meaning of ``lists``. Raises only ``ValueError``.
    """
    pairs = []
    for part in qs.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return unflatten(pairs, lists=lists)
