"""Revenue figures: the periods and series the read side sums from the dataflow's buckets.

Buckets (core/changes.py) come in two grains: the organisation's local day, and the UTC hour (local
hours are labelled from it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.changes import DAY, HOUR, Bucket
from core.money import Money, divide_half_up
from core.rates import MissingRate, Rates, convert

PERIODS = ("today", "yesterday", "7d", "30d", "90d", "all")
METRICS = ("gross_revenue", "refunds", "net_revenue", "orders", "paid_orders", "aov", "items_sold")
OPEN_END = "\uffff"  # sorts after every ISO date: "no last day"
# The dataflow's books that refuse an event older than their horizon ("too late"), as named in the
# "late" records (key: the store) that count those refusals per store.
LATE_BOOKS = ("revenue", "carts", "journey", "attribution")

__all__ = ["QUOTA_WINDOW_MS", "BadPeriod", "Figures", "MissingRate", "OPEN_END", "PERIODS", "METRICS", "compute_figures",
           "dashboard_figures", "gaps_json", "parse_until", "quota_count", "resolve_period", "series"]


QUOTA_WINDOW_MS = 30 * 86_400_000  # the plan quota counts paid orders over a rolling 30 days


def quota_count(paid_times: Iterable[int], at_ms: int) -> int:
    """Paid orders whose paid time is in (at - 30 days, at]: what the plan quota counts."""
    since = at_ms - QUOTA_WINDOW_MS
    return sum(1 for t in paid_times if since < t <= at_ms)


class BadPeriod(ValueError):
    pass


Gap = tuple[str, str]  # (currency, day): an amount that could not be converted for want of that rate


def gaps_json(gaps: Iterable[Gap], target: str) -> dict[str, object]:
    """What a money figure leaves out: per currency whose (ECB, per euro) rate was missing, the days
    without one, and a message saying so.
    Counts (orders, items) are never affected: only the amounts of those days are missing."""
    days: dict[str, list[str]] = {}
    for currency, day in sorted(gaps):
        days.setdefault(currency, []).append(day)
    missing = [{"currency": c, "days": len(d), "first": d[0], "last": d[-1]} for c, d in days.items()]
    said = "; ".join(f"{c} on {d[0]}" + (f" to {d[-1]} ({len(d)} days)" if len(d) > 1 else "") for c, d in days.items())
    return {"missing_rates": missing,
            "message": f"incomplete in {target}: no exchange rate for {said}; the amounts that needed it are left out"}


@dataclass(frozen=True, slots=True)
class Figures:
    gross_revenue: Money
    refunds: Money
    net_revenue: Money
    orders: int
    paid_orders: int
    aov: Money  # gross revenue / paid orders, rounded half up; 0 with no orders
    items_sold: int
    gaps: frozenset[Gap] = frozenset()  # amounts left out of the money figures for want of a rate

    def to_json(self) -> dict[str, object]:
        def money(m: Money) -> dict[str, object]:
            return {**m.to_json(), **gaps_json(self.gaps, m.currency)} if self.gaps else m.to_json()

        return {
            "gross_revenue": money(self.gross_revenue),
            "refunds": money(self.refunds),
            "net_revenue": money(self.net_revenue),
            "orders": self.orders,
            "paid_orders": self.paid_orders,
            "aov": money(self.aov),
            "items_sold": self.items_sold,
        }


def resolve_period(period: str | None, first: str | None, last: str | None, today: date) -> tuple[str, str]:
    """Inclusive local days (ISO) of a named period ending today, or of an explicit from/to range.

    "all" has no bounds ("" to "\\uffff"): an event stamped ahead of our clock still counts.
    """
    if first is not None or last is not None:
        if period not in (None, ""):
            raise BadPeriod("give either period or from/to, not both")
        try:
            lo = date.fromisoformat(first).isoformat() if first else ""
            hi = date.fromisoformat(last).isoformat() if last else OPEN_END
        except ValueError:
            raise BadPeriod(f"from/to must be dates as YYYY-MM-DD, got from={first!r} to={last!r}") from None
        if lo > hi:
            raise BadPeriod(f"from {lo} is after to {hi}")
        return lo, hi
    back = {"today": 0, "7d": 6, "30d": 29, "90d": 89}
    if period in back:
        return (today - timedelta(days=back[period])).isoformat(), today.isoformat()
    if period == "yesterday":
        y = (today - timedelta(days=1)).isoformat()
        return y, y
    if period == "all":
        return "", OPEN_END
    raise BadPeriod(f"period must be one of {', '.join(PERIODS)} (or from=/to= dates), got {period!r}")


def parse_until(raw: str) -> datetime:
    """`until=` of /figures: an instant with its offset on a whole hour (the hour buckets' edges)."""
    try:
        cut = datetime.fromisoformat(raw)
    except ValueError:
        cut = None
    if cut is None or cut.utcoffset() is None or cut.astimezone(UTC).minute or cut.second or cut.microsecond:
        raise BadPeriod(f"until must be a whole hour with its offset, as 2026-03-04T15:00:00Z (figures are kept "
                        f"by the hour), got {raw!r}")
    return cut


def _day_of_hour(start: str, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(start + ":00+00:00").astimezone(tz).date().isoformat()


def _in_currency(b: Bucket, currency: str, rates: Rates | None, day: str) -> tuple[int, int, Gap | None]:
    """A bucket's gross and refunds in `currency`, each converted once at the rate of its day; without
    that rate, zeros and the (currency, day) missing, so that the figure says what it leaves out."""
    try:
        return convert(rates, b.gross, b.currency, currency, day), convert(rates, b.refunds, b.currency, currency, day), None
    except MissingRate as exc:
        return 0, 0, (exc.currency or b.currency, exc.day or day)


@dataclass(slots=True)
class _Sum:
    gross: int = 0
    refunds: int = 0
    orders: int = 0
    paid: int = 0
    items: int = 0
    gaps: set[Gap] = field(default_factory=set)

    def add(self, b: Bucket, gross: int, refunds: int, gap: Gap | None = None) -> None:
        if gap is not None:
            self.gaps.add(gap)
        self.gross += gross
        self.refunds += refunds
        self.orders += b.orders
        self.paid += b.paid_orders
        self.items += b.items

    def figures(self, currency: str) -> Figures:
        return Figures(
            Money(self.gross, currency), Money(self.refunds, currency), Money(self.gross - self.refunds, currency),
            self.orders, self.paid, Money(divide_half_up(self.gross, self.paid), currency), self.items,
            frozenset(self.gaps),
        )

    def metric(self, name: str) -> int:
        return {
            "gross_revenue": self.gross, "refunds": self.refunds, "net_revenue": self.gross - self.refunds,
            "orders": self.orders, "paid_orders": self.paid, "aov": divide_half_up(self.gross, self.paid),
            "items_sold": self.items,
        }[name]


def compute_figures(
    buckets: Iterable[Bucket], *, first: str, last: str, currency: str, rates: Rates | None = None,
    store: str | None = None, until: tuple[datetime, ZoneInfo] | None = None,
) -> Figures:
    """Sums the day buckets whose local day is in [first, last]. With `until` (a whole hour, and the
    organisation's zone), the hour buckets of those days that begin before it instead: a day so far,
    to compare today with yesterday up to the same time (each hour converted at its local day's rate,
    as its day bucket is)."""
    total = _Sum()
    if until is None:
        for b in buckets:
            if b.grain != DAY or (store is not None and b.store != store) or not first <= b.start <= last:
                continue
            total.add(b, *_in_currency(b, currency, rates, b.start))
        return total.figures(currency)
    cut, tz = until
    before = cut.astimezone(UTC).strftime("%Y-%m-%dT%H")
    for b in buckets:
        if b.grain != HOUR or (store is not None and b.store != store) or b.start >= before:
            continue
        day = _day_of_hour(b.start, tz)
        if first <= day <= last:
            total.add(b, *_in_currency(b, currency, rates, day))
    return total.figures(currency)


def closed_days(first: str, last: str, what: str) -> tuple[date, date]:
    """The first and last day of a resolved period that must have both (a series, a segment's growth)."""
    if not first or last == OPEN_END:
        raise BadPeriod(f"{what} needs from and to dates (YYYY-MM-DD)")
    return date.fromisoformat(first), date.fromisoformat(last)


def series(
    buckets: Iterable[Bucket], *, metric: str, grain: str, first: str, last: str, tz: ZoneInfo, currency: str,
    rates: Rates | None = None, store: str | None = None, gaps: dict[str, frozenset[Gap]] | None = None,
    now: datetime | None = None,
) -> list[tuple[str, int | None]]:
    """One point per local day or hour from `first` to `last` (inclusive days), empty ones as 0; with
    `now`, the empty ones that begin after it as None (not yet: a chart of today stops at this hour).

    Hour points are labelled with their start in local time, with its offset (DST-proof). A point
    whose amounts lacked a rate leaves them out; with `gaps` given, it is filled with those points'
    labels and the (currency, day) missing for each.
    """
    if metric not in METRICS:
        raise BadPeriod(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if grain not in (DAY, HOUR):
        raise BadPeriod(f"granularity must be hour or day, got {grain!r}")
    lo, hi = closed_days(first, last, "a series")
    if (hi - lo).days > (366 if grain == HOUR else 3660):
        raise BadPeriod("that range has too many points: at most a year of hours or ten years of days")
    sums: dict[str, _Sum] = {}
    if grain == DAY:
        labels = [(lo + timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1)]
    else:
        start = datetime.combine(lo, datetime.min.time(), tz).astimezone(UTC)
        end = datetime.combine(hi + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
        labels = []
        t = start
        while t < end:
            labels.append(t.strftime("%Y-%m-%dT%H"))
            t += timedelta(hours=1)
    wanted = set(labels)
    for b in buckets:
        if b.grain != grain or b.start not in wanted or (store is not None and b.store != store):
            continue
        day = b.start if grain == DAY else _day_of_hour(b.start, tz)
        sums.setdefault(b.start, _Sum()).add(b, *_in_currency(b, currency, rates, day))
    out: list[tuple[str, int | None]] = []
    after = None if now is None else (now.astimezone(tz).date().isoformat() if grain == DAY
                                      else now.astimezone(UTC).strftime("%Y-%m-%dT%H"))
    for label in labels:
        value = sums[label].metric(metric) if label in sums else None if after is not None and label > after else 0
        shown = label if grain == DAY else datetime.fromisoformat(label + ":00+00:00").astimezone(tz).isoformat()
        out.append((shown, value))
        if gaps is not None and label in sums and sums[label].gaps:
            gaps[shown] = frozenset(sums[label].gaps)
    return out


def dashboard_figures(
    buckets: list[Bucket], *, today: date, currency: str, stores: Iterable[str], rates: Rates | None = None
) -> dict[str, object]:
    """Every named period for the whole organisation and for each store: what a dashboard shows.
    The same sums as compute_figures per period and store, in one pass: each bucket is converted once
    and added to the periods it falls in (it was 6 periods x (stores + 1) passes, each converting)."""
    spans = [(p, *resolve_period(p, None, None, today)) for p in PERIODS]
    shown = list(stores)
    sums = {(s, p): _Sum() for s in (None, *shown) for p in PERIODS}
    of_store = set(shown)
    for b in buckets:
        if b.grain != DAY:
            continue
        periods = [p for p, first, last in spans if first <= b.start <= last]
        if not periods:
            continue
        converted = _in_currency(b, currency, rates, b.start)
        for p in periods:
            sums[(None, p)].add(b, *converted)
            if b.store in of_store:
                sums[(b.store, p)].add(b, *converted)

    def block(store: str | None) -> dict[str, object]:
        return {p: sums[(store, p)].figures(currency).to_json() for p in PERIODS}

    return {"total": block(None), "stores": {s: block(s) for s in shown}}
