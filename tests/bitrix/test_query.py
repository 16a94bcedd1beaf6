"""The datetime bxsync puts in a filter: the documented form (api-reference/data-types.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from statussync.bitrix.query import filter_datetime_after


def test_it_sends_whole_seconds_with_an_offset_a_second_early():
    # api-reference/data-types.md: `YYYY-MM-DDThh:mm:ss±hh:mm`, e.g. 2023-12-28T14:05:48+03:00.
    moment = datetime(2026, 12, 7, 13, 5, 48, 731000, tzinfo=UTC)
    assert filter_datetime_after(moment) == "2026-12-07T13:05:47+00:00"
    moscow = timezone(timedelta(hours=3))
    assert filter_datetime_after(moment.astimezone(moscow)) == "2026-12-07T16:05:47+03:00"


def test_it_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="time zone"):
        filter_datetime_after(datetime(2026, 12, 7, 13, 5, 48))  # noqa: DTZ001 - naive on purpose
