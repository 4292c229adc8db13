"""Time helpers. The domain never reads the wall clock: callers pass `now` in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def utc_from_ms(time_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=time_ms)


def ms_of(t: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly (no float in between)."""
    return (t - _EPOCH) // _MS


def local_day(time_ms: int, tz: ZoneInfo) -> date:
    """The calendar day in `tz` on which an instant (ms since epoch, UTC) falls."""
    return utc_from_ms(time_ms).astimezone(tz).date()


class NoOffset(ValueError):
    """An ISO 8601 time without a UTC offset, where none is implied: it names no instant."""


def ms_from_iso(text: str, naive: tzinfo | None = None) -> int:
    """Milliseconds since the epoch of an ISO 8601 instant ("Z" or "+01:00"), exactly (no float in between).

    A time written without an offset is in `naive` when one is given (WooCommerce's `_gmt` fields
    are UTC written without one); else it names no instant: NoOffset. Raises ValueError saying what
    is wrong.
    """
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not ISO 8601") from None
    if t.tzinfo is None:
        if naive is None:
            raise NoOffset(f"{text!r} has no UTC offset (add Z or +01:00)")
        t = t.replace(tzinfo=naive)
    return ms_of(t)


def local_midnight(day: date, tz: ZoneInfo) -> int:
    """The first instant (ms since epoch, UTC) of a local calendar day.

    Where the clocks jump over midnight (a DST gap), the day starts at the jump; where midnight
    happens twice, at its first occurrence. So `local_day(local_midnight(d, tz), tz) == d`.
    """
    return ms_of(datetime.combine(day, datetime.min.time(), tz))
