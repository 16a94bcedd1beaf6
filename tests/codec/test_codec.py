"""phpquery: PHP http_build_query encoding and bracket-key parsing, shared by the client and the sandbox.

Expected strings follow PHP's rules (urlencode: everything but [A-Za-z0-9_.-] is %XX and space is '+';
true/false -> 1/0; null and empty arrays omitted). Where the client's and the sandbox's former copies
differed, the stricter behaviour won: malformed and conflicting keys raise ValueError.
"""

import contextlib
import datetime
import string
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phpquery import http_build_query, parse_bracket_query, php_lists, unflatten


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"id": 123, "fields": {"STAGE_ID": "C1:WON"}, "params": {"REGISTER_SONET_EVENT": "N"}},
            "id=123&fields%5BSTAGE_ID%5D=C1%3AWON&params%5BREGISTER_SONET_EVENT%5D=N",
            id="docs-batch-example",
        ),
        pytest.param(
            # [docs/bitrix.md "Parameter encoding"]
            {"fields": {"TITLE": "John&Martin"}},
            "fields%5BTITLE%5D=John%26Martin",
            id="docs-encoding-example",
        ),
        pytest.param({"select": ["ID", "STAGE_ID"]}, "select%5B0%5D=ID&select%5B1%5D=STAGE_ID", id="list"),
        pytest.param(
            {"filter": {"@ID": [1, 2], ">=DATE_MODIFY": "2024-01-01T00:00:00+03:00"}},
            "filter%5B%40ID%5D%5B0%5D=1&filter%5B%40ID%5D%5B1%5D=2"
            "&filter%5B%3E%3DDATE_MODIFY%5D=2024-01-01T00%3A00%3A00%2B03%3A00",
            id="filter-prefixes",
        ),
        pytest.param(
            {"fields": {"PHONE": [{"VALUE": "112233", "VALUE_TYPE": "WORK"}]}},
            "fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=112233&fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK",
            id="list-of-dicts",
        ),
        pytest.param({"q": "a b&c=d~e*f-g_h.i/j"}, "q=a+b%26c%3Dd%7Ee%2Af-g_h.i%2Fj", id="php-urlencode"),
        pytest.param({"title": "Сделка"}, "title=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0", id="utf-8"),
        pytest.param({"a b": {"c d": "e"}}, "a+b%5Bc+d%5D=e", id="keys-encoded-too"),
        pytest.param({"yes": True, "no": False}, "yes=1&no=0", id="bools"),
        pytest.param({"a": None, "b": [None, "x"]}, "b%5B1%5D=x", id="none-omitted-index-kept"),
        pytest.param({"a": {}, "b": [], "c": ""}, "c=", id="empty-containers-omitted"),
        pytest.param(
            {"a": 1.5, "b": 2.0, "c": Decimal("10.50"), "d": -3}, "a=1.5&b=2&c=10.50&d=-3", id="numbers"
        ),
        pytest.param({0: "x", 1: ("y",)}, "0=x&1%5B0%5D=y", id="int-keys-and-tuples"),
        pytest.param({}, "", id="empty"),
    ],
)
def test_it_encodes_like_php(params, expected):
    assert http_build_query(params) == expected


def test_it_refuses_values_php_would_not_see():
    with pytest.raises(TypeError, match="datetime"):
        http_build_query({"since": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)})
    with pytest.raises(ValueError, match="nan"):
        http_build_query({"x": float("nan")})


def test_it_parses_what_it_encodes():
    params = {"id": 123, "fields": {"STAGE_ID": "C1:WON", "TITLE": "a b&c"}, "select": ["ID", "STAGE_ID"]}

    assert parse_bracket_query(http_build_query(params)) == {
        "id": "123",
        "fields": {"STAGE_ID": "C1:WON", "TITLE": "a b&c"},
        "select": {"0": "ID", "1": "STAGE_ID"},  # explicit indexes stay string keys
    }


def test_it_parses_an_outgoing_webhook_body():
    # The raw body of an outgoing webhook's event [docs/bitrix.md "Events"]
    raw = (
        "event=ONCRMDEALUPDATE&event_handler_id=975&data%5BFIELDS%5D%5BID%5D=7405&ts=1766047124"
        "&auth%5Bdomain%5D=some-domain.bitrix24.ru"
        "&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.ru%2Frest%2F"
        "&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix24.tech%2Frest%2F&auth%5Bmember_id%5D=d8975915"
        "&auth%5Bapplication_token%5D=jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
    )

    assert parse_bracket_query(raw) == {
        "event": "ONCRMDEALUPDATE",
        "event_handler_id": "975",
        "data": {"FIELDS": {"ID": "7405"}},
        "ts": "1766047124",
        "auth": {
            "domain": "some-domain.bitrix24.ru",
            "client_endpoint": "https://some-domain.bitrix24.ru/rest/",
            "server_endpoint": "https://oauth.bitrix24.tech/rest/",
            "member_id": "d8975915",
            "application_token": "jvh9y1ulvt2m6k5or90v9mg8nn32ozas",
        },
    }


@pytest.mark.parametrize(
    ("qs", "expected"),
    [
        pytest.param("a[]=1&a[]=2", {"a": ["1", "2"]}, id="append"),
        pytest.param("a[][b]=1&a[][b]=2", {"a": [{"b": "1"}, {"b": "2"}]}, id="append-dicts"),
        pytest.param("a[0]=x&a[1]=y", {"a": {"0": "x", "1": "y"}}, id="numeric-keys-are-strings"),
        pytest.param("fields[STAGE_ID]=C1:WON", {"fields": {"STAGE_ID": "C1:WON"}}, id="raw-brackets"),
        pytest.param("q=a+b%2Bc", {"q": "a b+c"}, id="plus-is-space"),
        pytest.param("a=&b", {"a": "", "b": ""}, id="empty-values"),
        pytest.param("a=1&a=2", {"a": "2"}, id="last-wins-like-php"),
        pytest.param("a=1&&b=2&", {"a": "1", "b": "2"}, id="stray-separators"),
        pytest.param("a[]=", {"a": [""]}, id="empty-append"),
        pytest.param("", {}, id="empty"),
    ],
)
def test_it_parses_bracket_keys(qs, expected):
    assert parse_bracket_query(qs) == expected


@pytest.mark.parametrize("qs", ["a[b=1", "a]=1", "[a]=1", "a[b]c=1", "a[b[c]]=1", "=1", "a[b]]=1"])
def test_it_rejects_malformed_keys(qs):
    with pytest.raises(ValueError, match="malformed"):
        parse_bracket_query(qs)


@pytest.mark.parametrize(
    "qs",
    ["a=1&a[b]=2", "a[b]=2&a=1", "a[]=1&a[x]=2", "a[x]=1&a[]=2", "a[b]=1&a[b][c]=2", "a[]=1&a=2"],
)
def test_it_rejects_conflicting_keys(qs):
    with pytest.raises(ValueError, match=r"conflicts|mixes"):
        parse_bracket_query(qs)


def test_it_limits_the_nesting_depth():
    assert parse_bracket_query("a" + "[x]" * 32 + "=1")
    with pytest.raises(ValueError, match="deeper"):
        parse_bracket_query("a" + "[x]" * 33 + "=1")


def test_it_unflattens_decoded_pairs():
    # e.g. request.POST.items() in a Django view, already decoded
    pairs = [("data[FIELDS][ID]", "7405"), ("auth[application_token]", "t0k&n")]

    assert unflatten(pairs) == {"data": {"FIELDS": {"ID": "7405"}}, "auth": {"application_token": "t0k&n"}}


def test_it_is_the_codec_of_the_bitrix_client():
    from statussync import bitrix

    assert bitrix.http_build_query is http_build_query
    assert bitrix.parse_bracket_query is parse_bracket_query


def test_it_reads_numbered_keys_as_php_arrays_when_asked():
    # What a portal sees: PHP makes select[0]=ID and select[]=ID the same array.
    parsed = parse_bracket_query(
        "id=5&fields%5BSTAGE_ID%5D=C1%3AWON&select[]=ID&select[]=TITLE"
        "&filter[%3EDATE_MODIFY]=2024-01-01&filter[@ID][0]=1&filter[@ID][1]=2",
        lists=True,
    )

    assert parsed == {
        "id": "5",
        "fields": {"STAGE_ID": "C1:WON"},
        "select": ["ID", "TITLE"],
        "filter": {">DATE_MODIFY": "2024-01-01", "@ID": ["1", "2"]},
    }


def test_it_builds_queries_a_portal_reads_back():
    params = {"id": 123, "fields": {"STAGE_ID": "C1:WON", "TITLE": "a&b c"}, "select": ["ID"], "halt": True}
    query = http_build_query(params)

    assert query.startswith("id=123&fields%5BSTAGE_ID%5D=C1%3AWON&fields%5BTITLE%5D=a%26b+c")
    assert parse_bracket_query(query, lists=True) == {
        "id": "123",
        "fields": {"STAGE_ID": "C1:WON", "TITLE": "a&b c"},
        "select": ["ID"],
        "halt": "1",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"0": "a", "1": "b"}, ["a", "b"], id="sequential"),
        pytest.param({"1": "a", "0": "b"}, {"1": "a", "0": "b"}, id="out-of-order-stays-a-map"),
        pytest.param({"0": "a", "2": "b"}, {"0": "a", "2": "b"}, id="gap-stays-a-map"),
        pytest.param({"x": {"0": {"0": "y"}}}, {"x": [["y"]]}, id="nested"),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_it_converts_php_arrays_like_json_encode(value, expected):
    assert php_lists(value) == expected


def test_it_keeps_the_top_level_a_map_of_parameters():
    assert parse_bracket_query("0=a&1=b", lists=True) == {"0": "a", "1": "b"}


# Keys a client would send: no brackets, and not a bare number (a mapping keyed "0".."n-1" *is* a PHP list).
_keys = st.text(st.characters(exclude_characters="[]", exclude_categories=("Cs",)), min_size=1).filter(
    lambda key: not key.isdecimal()
)
_values = st.recursive(
    st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=4) | st.dictionaries(_keys, inner, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(_keys, _values, max_size=5))
def test_it_round_trips_nested_parameters(params):
    assert parse_bracket_query(http_build_query(params), lists=True) == params


@given(st.text() | st.text(alphabet="[]&=%+a0 "))
def test_it_raises_nothing_but_value_error_on_any_text(text):
    for lists in (False, True):
        with contextlib.suppress(ValueError):
            parse_bracket_query(text, lists=lists)


@given(st.lists(st.tuples(st.text(alphabet=string.ascii_letters + "[]"), st.text()), max_size=8))
def test_it_unflattens_any_pairs_or_says_why_not(pairs):
    with contextlib.suppress(ValueError):
        unflatten(pairs, lists=True)
