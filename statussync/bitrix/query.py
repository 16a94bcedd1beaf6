"""PHP bracket-query encoding for the Bitrix client: the shared codec lives in the top-level ``phpquery``.

Kept as a re-export so existing imports (``statussync.bitrix.query``) keep working.
"""

from phpquery import http_build_query, parse_bracket_query, unflatten

__all__ = ["http_build_query", "parse_bracket_query", "unflatten"]
