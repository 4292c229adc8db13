"""What the carts, journey, attribution and profile books share: the organisation's version, its local
days, how long they keep what they decided, and the tally of what they refused as too late.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.clock import utc_from_ms
from core.events import Event

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# How long the shoppers' books keep what they decided, so a late event can still correct it.
DEFAULT_KEEP_MS = 7 * DAY_MS
_QUARTER_MS = 15 * MINUTE_MS  # every UTC offset in use is a multiple of 15 minutes


@dataclass(slots=True)
class Version:
    """The organisation's change version. Books that feed one change feed share one `Version`, so
    every record they emit has a version greater than every record emitted before it."""

    value: int = 0

    def next(self) -> int:
        self.value += 1
        return self.value


@dataclass(slots=True)
class Refused:
    """A store's events that one book refused as too late: how many, and the last one refused."""

    count: int = 0
    last_time: int = 0  # its event time, ms
    last_id: str = ""


@dataclass(slots=True)
class TooLate:
    """The events a book refused as too late (older than its watermark minus its horizon, so counted
    nowhere), in all and per store, for the connection's monitoring. `changed`: the stores with a
    refusal since the last `take_changed`."""

    count: int = 0
    stores: dict[str, Refused] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def refuse(self, event: Event) -> None:
        self.count += 1
        r = self.stores.get(event.store)
        if r is None:
            r = self.stores[event.store] = Refused()
        r.count += 1
        r.last_time, r.last_id = event.time, event.id
        self.changed.add(event.store)

    def take_changed(self) -> set[str]:
        changed = self.changed
        if changed:
            self.changed = set()
        return changed


class Days:
    """The local calendar of one time zone: the ISO day of an instant, and the instant a day ends."""

    __slots__ = ("tz", "_days", "_ends")

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self._days: dict[int, str] = {}
        self._ends: dict[str, int] = {}

    def __getstate__(self) -> str:
        return self.tz.key

    def __setstate__(self, key: str) -> None:
        self.__init__(key)  # type: ignore[misc]  # unpickling rebuilds from the key, as the constructor does

    def of(self, time_ms: int) -> str:
        """The local ISO day (YYYY-MM-DD) on which the instant falls."""
        quarter = time_ms // _QUARTER_MS  # a local day never starts inside a UTC quarter hour
        day = self._days.get(quarter)
        if day is None:
            if len(self._days) > 20_000:
                self._days.clear()
            day = self._days[quarter] = utc_from_ms(time_ms).astimezone(self.tz).date().isoformat()
        return day

    def end(self, day: str) -> int:
        """The first instant (UTC ms) after the local day: the next local midnight."""
        end = self._ends.get(day)
        if end is None:
            if len(self._ends) > 20_000:
                self._ends.clear()
            midnight = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time.min, self.tz)
            end = self._ends[day] = int(midnight.timestamp() * 1000)
        return end
