"""Exchange rates in the ECB euro reference-rate format, and exact conversion at an event's day.

The file is ECB's `eurofxref-hist.csv` shape: a `Date` column (YYYY-MM-DD) and one column per
currency holding how many units of it one euro buys ("N/A" or empty where there was no fixing).
A day without a fixing (weekends, holidays, a gap) uses the last known rate before it; a day before
the first known rate is an error that names the currency and day, never a silent 1.0.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.money import EXPONENTS


class MissingRate(ValueError):
    def __init__(self, message: str, currency: str = "", day: str = "") -> None:
        super().__init__(message)
        self.currency = currency  # the currency without a rate, and the day it was needed for
        self.day = day


class RatesFileError(ValueError):
    pass


@dataclass
class Rates:
    # currency -> sorted ISO days, and the rate (units per EUR) on each
    _days: dict[str, list[str]] = field(default_factory=dict)
    _values: dict[str, list[Decimal]] = field(default_factory=dict)

    def per_euro(self, currency: str, day: str) -> Decimal:
        if currency == "EUR":
            return Decimal(1)
        days = self._days.get(currency)
        i = bisect.bisect_right(days, day) - 1 if days else -1
        if i < 0:
            first = f" (the rates start on {days[0]})" if days else " (the rates file has no such column)"
            raise MissingRate(f"no exchange rate for {currency} on or before {day}{first}", currency, day)
        return self._values[currency][i]

    def digest(self) -> bytes:
        """A digest of every rate: equal digests, equal conversions (ws_gateway/kept_file.py)."""
        h = hashlib.sha256()
        for currency in sorted(self._days):
            h.update(f"{currency}\0{self._days[currency]}\0{self._values[currency]}\0".encode())
        return h.digest()

    @property
    def currencies(self) -> list[str]:
        return sorted(c for c, days in self._days.items() if days)

    def last_day(self) -> str:
        """The newest day any currency has a rate for ("" for none)."""
        return max((days[-1] for days in self._days.values() if days), default="")

    def convert(self, amount: int, source: str, target: str, day: str) -> int:
        """Minor units of `source` to minor units of `target` at the rate of `day`, rounded half up."""
        if source == target:
            return amount
        major = Decimal(amount).scaleb(-EXPONENTS[source])
        converted = major * self.per_euro(target, day) / self.per_euro(source, day)
        return int(converted.scaleb(EXPONENTS[target]).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class RecordingRates(Rates):
    """Rates that, lacking one, record (currency, day) and give 0 instead of raising: a list or figure
    computed with them leaves those amounts out and then says so (core/figures.py gaps_json)."""

    def __init__(self, inner: Rates | None) -> None:
        super().__init__()
        self.inner = inner
        self.gaps: set[tuple[str, str]] = set()

    def convert(self, amount: int, source: str, target: str, day: str) -> int:
        if source == target:
            return amount
        try:
            if self.inner is None:
                raise MissingRate(f"no exchange rate for {source} to {target} on {day}", source, day)
            return self.inner.convert(amount, source, target, day)
        except MissingRate as exc:
            self.gaps.add((exc.currency or source, exc.day or day))
            return 0


LATEST = "9999-12-31"  # converting at this day takes the latest known rate


def convert(rates: Rates | None, amount: int, source: str, target: str, day: str) -> int:
    """`amount` minor units of `source` in `target` at `day`'s rate. The one place that decides:
    the same currency needs no rate; without a rates file another currency is an error, never 1:1."""
    if source == target:
        return amount
    if rates is None:
        raise MissingRate(f"no exchange rate for {source} to {target} on {day}: configure rates_file", source, day)
    return rates.convert(amount, source, target, day)


# Currencies ECB published before the euro replaced them (or, TRL and ROL, before a redenomination):
# their columns in eurofxref-hist.csv are history no shop sells in today, and not in ISO 4217's list
# one (core/money.py), so they are skipped rather than refused.
WITHDRAWN = frozenset({"CYP", "EEK", "HRK", "LTL", "LVL", "MTL", "ROL", "SIT", "SKK", "TRL"})


def parse_ecb_csv(text: str) -> Rates:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise RatesFileError("the rates file is empty") from None
    if not header or header[0] != "Date":
        raise RatesFileError("the first column of the rates file must be 'Date' (ECB eurofxref-hist.csv format)")
    columns = [(i, h) for i, h in enumerate(header) if i > 0 and h and h not in WITHDRAWN]
    unknown = [h for _, h in columns if h not in EXPONENTS]
    if unknown:
        raise RatesFileError(f"unknown currency column(s) in the rates file: {', '.join(unknown)}")
    rows: list[tuple[str, list[str]]] = []
    for n, row in enumerate(reader, start=2):
        if not row or not row[0].strip():
            continue
        day = row[0].strip()
        if len(day) != 10 or day[4] != "-" or day[7] != "-":
            raise RatesFileError(f"line {n}: date {day!r} is not YYYY-MM-DD")
        rows.append((day, row))
    rows.sort()
    rates = Rates()
    for i, cur in columns:
        days, values = [], []
        for day, row in rows:
            cell = row[i].strip() if i < len(row) else ""
            if cell in ("", "N/A"):
                continue
            try:
                value = Decimal(cell)
            except InvalidOperation:
                raise RatesFileError(f"{day}: {cur} rate {cell!r} is not a number") from None
            if value <= 0:
                raise RatesFileError(f"{day}: {cur} rate must be positive")
            days.append(day)
            values.append(value)
        rates._days[cur], rates._values[cur] = days, values
    return rates
