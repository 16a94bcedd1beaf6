"""The sandbox's private PHP bracket-query parser/encoder."""

from __future__ import annotations

from bitrix_sandbox.query import http_build_query, parse_bracket_query


def test_it_parses_nested_brackets_lists_and_prefixed_keys() -> None:
    parsed = parse_bracket_query(
        "id=5&fields%5BSTAGE_ID%5D=C1%3AWON&select[]=ID&select[]=TITLE&filter[%3EDATE_MODIFY]=2024-01-01&filter[@ID][0]=1"
    )
    assert parsed == {
        "id": "5",
        "fields": {"STAGE_ID": "C1:WON"},
        "select": ["ID", "TITLE"],
        "filter": {">DATE_MODIFY": "2024-01-01", "@ID": ["1"]},
    }


def test_it_builds_php_style_queries_that_parse_back() -> None:
    params = {"id": 123, "fields": {"STAGE_ID": "C1:WON", "TITLE": "a&b c"}, "select": ["ID"], "halt": True}
    query = http_build_query(params)
    assert query.startswith("id=123&fields%5BSTAGE_ID%5D=C1%3AWON&fields%5BTITLE%5D=a%26b+c")
    assert parse_bracket_query(query) == {
        "id": "123",
        "fields": {"STAGE_ID": "C1:WON", "TITLE": "a&b c"},
        "select": ["ID"],
        "halt": "1",
    }
