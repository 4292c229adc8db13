"""The organisation a rule is evaluated for: its time zone, its currency and exchange rates, and the
segments that `in_segment` may name.

A Context holds caches (local days, conversions) and nothing else that changes: evaluating a rule
never changes what it says, and two Contexts built from the same arguments answer alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from types import MappingProxyType
from zoneinfo import ZoneInfo

from core.clock import local_day, local_midnight
from core.rates import Rates, convert
from core.rules.tree import Rule

_QUARTER_MS = 15 * 60_000  # local days start on a UTC quarter hour in every zone since 1980
_CACHE_LIMIT = 50_000
NO_SEGMENTS: Mapping[str, Rule] = MappingProxyType({})


class Context:
    """`timezone` (IANA name) cuts local days; money is compared in `currency` (ISO 4217), other
    currencies converted with `rates` at the rate of the entry's local day (core.rates.convert: without
    rates another currency raises MissingRate); `segments` resolves in_segment."""

    __slots__ = ("_days", "_midnights", "_values", "currency", "rates", "segments", "timezone", "tz")

    def __init__(self, timezone: str, currency: str, rates: Rates | None = None,
                 segments: Mapping[str, Rule] = NO_SEGMENTS) -> None:
        self.timezone, self.currency, self.rates, self.segments = timezone, currency, rates, segments
        self.tz = ZoneInfo(timezone)
        self._days: dict[int, int] = {}
        self._midnights: dict[int, int] = {}
        self._values: dict[tuple[int, str, int], int] = {}

    def with_segments(self, segments: Mapping[str, Rule]) -> Context:
        return Context(self.timezone, self.currency, self.rates, segments)

    def day(self, time_ms: int) -> int:
        """The local day (a proleptic Gregorian ordinal, date.toordinal) on which an instant falls."""
        quarter = time_ms // _QUARTER_MS
        day = self._days.get(quarter)
        if day is None:
            if len(self._days) > _CACHE_LIMIT:
                self._days.clear()
            day = self._days[quarter] = local_day(time_ms, self.tz).toordinal()
        return day

    def midnight(self, day: int) -> int:
        """The first instant of the local day `day` (an ordinal)."""
        start = self._midnights.get(day)
        if start is None:
            if len(self._midnights) > _CACHE_LIMIT:
                self._midnights.clear()
            start = self._midnights[day] = local_midnight(date.fromordinal(day), self.tz)
        return start

    def value(self, amount: int, currency: str, time_ms: int) -> int:
        """`amount` minor units of `currency` in the organisation's currency, at the rate of the local day
        of `time_ms`, rounded half up."""
        if currency == self.currency:
            return amount
        day = self.day(time_ms)
        key = (amount, currency, day)
        converted = self._values.get(key)
        if converted is None:
            if len(self._values) > _CACHE_LIMIT:
                self._values.clear()
            iso = date.fromordinal(day).isoformat()
            converted = self._values[key] = convert(self.rates, amount, currency, self.currency, iso)
        return converted
