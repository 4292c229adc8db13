"""Time helpers. The domain never reads the wall clock: callers pass `now` in."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def utc_from_ms(time_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=time_ms)


def ms_of(t: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly (no float in between)."""
    return (t - _EPOCH) // _MS


def local_day(time_ms: int, tz: ZoneInfo) -> date:
    """The calendar day in `tz` on which an instant (ms since epoch, UTC) falls."""
    return utc_from_ms(time_ms).astimezone(tz).date()


def ms_from_iso(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 instant that carries its offset ("Z" or "+01:00").

    Raises ValueError saying what is wrong: a time without an offset names no instant.
    """
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not ISO 8601") from None
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return (t - _EPOCH) // _MS  # exact: no float in between


def local_midnight(day: date, tz: ZoneInfo) -> int:
    """The first instant (ms since epoch, UTC) of a local calendar day.

    Where the clocks jump over midnight (a DST gap), the day starts at the jump; where midnight
    happens twice, at its first occurrence. So `local_day(local_midnight(d, tz), tz) == d`.
    """
    return ms_of(datetime.combine(day, datetime.min.time(), tz))
