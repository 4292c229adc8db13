"""Time helpers. The domain never reads the wall clock: callers pass `now` in."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc_from_ms(time_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=time_ms)


def local_day(time_ms: int, tz: ZoneInfo) -> date:
    """The calendar day in `tz` on which an instant (ms since epoch, UTC) falls."""
    return utc_from_ms(time_ms).astimezone(tz).date()
