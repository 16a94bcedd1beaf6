"""The values bxsync puts in a Bitrix filter, in the forms the docs give (the PHP bracket-query codec itself
is the top-level ``phpquery``)."""

from datetime import datetime, timedelta

__all__ = ["filter_datetime_after"]


def filter_datetime_after(moment: datetime) -> str:
    """``moment`` for a ``>FIELD`` filter, in the documented form ``YYYY-MM-DDThh:mm:ss±hh:mm``
    (api-reference/data-types.md; never microseconds) [docs/bitrix.md "Dates in filters"].

    Bitrix keeps change times to the second, so a change in ``moment``'s own second carries that second,
    not a later one: the value sent is the second before it, and ``>`` then misses nothing.
    """
    if moment.tzinfo is None:
        raise ValueError("a filter datetime needs a time zone: Bitrix reads a naive one as the portal's")
    whole = moment.replace(microsecond=0) - timedelta(seconds=1)
    return whole.isoformat(timespec="seconds")
