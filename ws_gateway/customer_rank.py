"""Best customers over a period, kept in step with the day parts instead of recomputed. Pure.

A customer's revenue over a period spans its days, so no merge of day parts ranks them; summing 90
days of 1M orders (~650,000 customers) for every request after a write cost seconds. Here the sums
are kept: when a day's part is recomputed (its stamp moved: a write, in a live shop to today), the
customers whose entry in that day changed are found by comparing the day's old and new part, and
only they are re-summed, re-ranked and re-counted. The answer is the one `lists.period_customers`,
`lists.customers_list` and `lists.customer_summary` give over all the period's orders at once
(tests/test_customer_rank.py compares both on random histories with ties, refunds and late writes).

- `DayMerge`: per customer, the sums of the day parts (`lists.PeriodCustomer`).
- `LivesMerge`: every profile's lifetime (`lists.Lifetime`), merged from the profile-day parts, with
  a log of which customers changed, so several periods share one.
- `TopRank`: the first customers by a sort key, exactly: all those whose key is at most a bound.
- `RankedPeriod`: one period's sums, summary counts and rankings, synced from both.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.figures import OPEN_END
from ws_gateway.lists import Lifetime, PeriodCustomer

Figures = dict[str, PeriodCustomer]
Lives = dict[str, Lifetime]
SortKey = tuple[Any, ...]  # ends with the customer: unique, so a total order

# A period's ranking keeps this many first customers (twice the largest ?limit=): one that leaves
# the top (a total that went down) is not replaced, and below `limit` left the ranking is redone.
KEEP = 2000
LOG = 256  # the lives' change sets kept for periods that sync less often; older: a full recount


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _changed_days(kept: Mapping[str, object], parts: Mapping[str, object]) -> list[str]:
    """Days added, dropped or recomputed (a kept part is the same object while its stamp stands)."""
    return [d for d in kept.keys() | parts.keys() if kept.get(d) is not parts.get(d)]


class DayMerge:
    """Per customer, `lists.period_customers` over all the days' parts; `orders` their paid orders."""

    def __init__(self) -> None:
        self.days: dict[str, Figures] = {}
        self.figures: Figures = {}
        self.orders = 0

    def sync(self, parts: Mapping[str, Figures]) -> set[str] | None:
        """Take these parts (day -> a part's customers); the customers whose sums changed (None: all
        were summed anew, as the first time or when most days changed)."""
        changed_days = _changed_days(self.days, parts)
        if not changed_days:
            return set()
        moved = sum(len(self.days.get(d, ())) + len(parts.get(d, ())) for d in changed_days)
        if not self.days or moved > len(self.figures) // 2:
            self._rebuild(parts)
            return None
        deltas: list[tuple[str, PeriodCustomer | None, PeriodCustomer | None]] = []
        for d in changed_days:
            old, new = self.days.pop(d, {}), parts.get(d)
            if new is not None:
                self.days[d] = new
            new = new or {}
            # the day's entries that changed or came, then those that went: one look-up each (an updated
            # part keeps the entries of customers it did not change: the same objects, no comparison)
            deltas += [(c, o, n) for c, n in new.items() if (o := old.get(c)) is not n and o != n]
            deltas += [(c, old[c], None) for c in old.keys() - new.keys()]
        again = set()  # customers whose first or last paid order may have been the one that left
        for c, o, n in deltas:
            f = self.figures.get(c)
            if f is None:
                f = self.figures[c] = PeriodCustomer()
            if o is not None:
                f.revenue, f.orders, f.items = f.revenue - o.revenue, f.orders - o.orders, f.items - o.items
                self.orders -= o.orders
                if o.first == f.first or o.last == f.last:
                    again.add(c)
            if n is not None:
                f.revenue, f.orders, f.items = f.revenue + n.revenue, f.orders + n.orders, f.items + n.items
                f.first, f.last = _min(f.first, n.first), _max(f.last, n.last)
                self.orders += n.orders
            if f.orders == 0:  # every part's entry has a paid order: none left in any day
                del self.figures[c]
        for c in again:
            if (f := self.figures.get(c)) is not None:
                f.first = f.last = None
                for part in self.days.values():
                    if (p := part.get(c)) is not None:
                        f.first, f.last = _min(f.first, p.first), _max(f.last, p.last)
        return {c for c, _, _ in deltas}

    def _rebuild(self, parts: Mapping[str, Figures]) -> None:
        self.days = dict(parts)
        out: Figures = {}
        for d in sorted(parts):
            for k, c in parts[d].items():
                acc = out.get(k)
                if acc is None:
                    out[k] = PeriodCustomer(c.revenue, c.orders, c.items, c.first, c.last)
                else:
                    acc.revenue += c.revenue
                    acc.orders += c.orders
                    acc.items += c.items
                    acc.first, acc.last = _min(acc.first, c.first), _max(acc.last, c.last)
        self.figures = out
        self.orders = sum(c.orders for c in out.values())


class LivesMerge:
    """Every profile's `Lifetime`, from the profile-day parts; `seq` counts the syncs that changed
    something and `changes_since` tells a period which customers changed after the seq it saw."""

    def __init__(self) -> None:
        self.days: dict[str, Lives] = {}
        self.lives: Lives = {}
        self.seq = 0
        self._log: deque[tuple[int, frozenset[str]]] = deque(maxlen=LOG)
        self._rebuilt = 0  # the seq of the last full merge: before it, no change set is known

    def sync(self, parts: Mapping[str, Lives]) -> None:
        changed_days = _changed_days(self.days, parts)
        if not changed_days:
            return
        self.seq += 1
        if not self.days or len(changed_days) > len(parts) // 2:
            self.days = dict(parts)
            self.lives = {}
            for d in sorted(parts):
                self.lives.update(parts[d])
            self._rebuilt = self.seq
            self._log.clear()
            return
        changed: set[str] = set()
        for d in changed_days:
            old, new = self.days.pop(d, {}), parts.get(d)
            if new is not None:
                self.days[d] = new
            new = new or {}
            for c, n in new.items():
                if old.get(c) != n:
                    changed.add(c)
                    self.lives[c] = n
            for c in old.keys() - new.keys():
                changed.add(c)
                if self.lives.get(c) is old[c]:  # a profile that moved to another day keeps that day's
                    del self.lives[c]
        self._log.append((self.seq, frozenset(changed)))

    def changes_since(self, seq: int) -> set[str] | None:
        """The customers whose lifetime changed after `seq` (None: unknown, recount all)."""
        if seq < self._rebuilt or (self._log and seq < self._log[0][0] - 1):
            return None
        out: set[str] = set()
        for s, changed in self._log:
            if s > seq:
                out |= changed
        return out


class TopRank:
    """The first customers by `key` (ascending): every customer whose key is at most `bound`, sorted.
    A customer whose key changes is taken out and put back if still within the bound, so the list
    stays exact; it only shrinks when a customer leaves the top, and is redone when asked for more
    than it holds."""

    def __init__(self, key: Callable[[str], SortKey], keep: int = KEEP) -> None:
        self.key, self.keep = key, keep
        self.top: list[SortKey] = []
        self.where: dict[str, SortKey] = {}
        self.bound: SortKey | None = None  # None: every customer is in `top`

    def build(self, customers: Iterable[str]) -> None:
        self.top = heapq.nsmallest(self.keep, map(self.key, customers))
        self.where = {k[-1]: k for k in self.top}
        self.bound = self.top[-1] if len(self.top) == self.keep else None

    def update(self, customer: str, present: bool) -> None:
        old = self.where.pop(customer, None)
        if old is not None:
            del self.top[bisect_left(self.top, old)]
        if present:
            k = self.key(customer)
            if self.bound is None or k <= self.bound:
                insort(self.top, k)
                self.where[customer] = k

    def first(self, limit: int) -> list[str] | None:
        """The first `limit` customers (None: fewer are known; build again)."""
        if len(self.top) < limit and self.bound is not None:
            return None
        return [k[-1] for k in self.top[:limit]]


def local_days(first: str, last: str, tz: ZoneInfo) -> tuple[float, float]:
    """[since, until) in ms: the instants whose local day in `tz` is in [first, last] ("" and OPEN_END
    open), so a period's membership is two comparisons, not a date conversion per customer. A local
    midnight that DST skips or repeats starts its day at its first instant (fold 0)."""
    def start(day: str, after: int, edge: float) -> float:
        try:
            return datetime.combine(date.fromisoformat(day) + timedelta(days=after), time(), tzinfo=tz).timestamp() * 1000
        except (OverflowError, ValueError):  # near year 1 or 9999: nothing lies beyond
            return edge

    since = -math.inf if first == "" else start(first, 0, -math.inf)
    until = math.inf if last == OPEN_END else start(last, 1, math.inf)
    return since, until


NEW, REPEAT = 1, 2  # a customer's part of `lists.customer_summary`'s counts


class RankedPeriod:
    """The best customers of [first, last]: sums, summary counts and rankings, synced from the
    period's order-day parts and the organisation's profiles."""

    def __init__(self, first: str, last: str, tz: ZoneInfo) -> None:
        self.first, self.last, self.tz = first, last, tz
        self.since, self.until = local_days(first, last, tz)
        self.merge = DayMerge()
        self.lives = LivesMerge()
        self.lives_seq = -1
        self.counted: dict[str, int] = {}  # customer -> NEW | REPEAT bits
        self.new = self.repeat = 0
        self.ranks: dict[str, TopRank] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (ws_gateway/kept_file.py) with each ranking's customers, not its key: a function of this
        period, made again on load."""
        state = dict(self.__dict__)
        state["ranks"] = {sort: (r.keep, r.top, r.where, r.bound) for sort, r in self.ranks.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ranks = state.pop("ranks")
        self.__dict__.update(state)
        self.ranks = {}
        for sort, (keep, top, where, bound) in ranks.items():
            rank = self.ranks[sort] = TopRank(self._key(sort), keep)
            rank.top, rank.where, rank.bound = top, where, bound

    def roll(self, first: str, last: str) -> RankedPeriod:
        """The same period a day (or more) later, from these sums: a period named by its length ("7d")
        ends on a new day at midnight. The sums follow the days added and dropped at the next sync
        (DayMerge.sync), the summary and rankings are redone then (they depend on the first day):
        an O(customers) pass instead of summing every day again."""
        out = RankedPeriod(first, last, self.tz)
        out.merge = self.merge
        return out

    def sync(self, parts: Mapping[str, Figures], lives: LivesMerge) -> None:
        self.lives = lives
        changed = self.merge.sync(parts)
        lives_changed = lives.changes_since(self.lives_seq)
        self.lives_seq = lives.seq
        if changed is None or lives_changed is None:
            self._recount()
            self.ranks.clear()  # built again when asked
            return
        figures = self.merge.figures
        touched = changed | {c for c in lives_changed if c in figures or c in self.counted}
        for c in touched:
            present = c in figures
            self._count(c, self._part(c) if present else 0)
            for rank in self.ranks.values():
                rank.update(c, present)

    def _part(self, c: str) -> int:
        """As lists.customer_summary counts a customer of the period."""
        f = self.merge.figures[c]
        life = self.lives.lives.get(c)
        first_paid = life.first_paid if life is not None and life.first_paid is not None else f.first
        assert first_paid is not None  # every customer of the period paid in it
        if self.since <= first_paid < self.until:  # its first paid order ever is in the period: new
            return NEW | (REPEAT if f.orders >= 2 else 0)
        return REPEAT

    def _count(self, c: str, bits: int) -> None:
        old = self.counted.pop(c, 0)
        if bits:
            self.counted[c] = bits
        self.new += (bits & NEW) - (old & NEW)
        self.repeat += ((bits & REPEAT) - (old & REPEAT)) // REPEAT

    def _recount(self) -> None:
        self.counted = {c: self._part(c) for c in self.merge.figures}
        self.new = sum(1 for b in self.counted.values() if b & NEW)
        self.repeat = sum(1 for b in self.counted.values() if b & REPEAT)

    def _key(self, sort: str) -> Callable[[str], SortKey]:
        """lists.customers_list's order."""
        if sort == "registered":  # newest registration first; customers without a profile last
            def key(c: str) -> SortKey:
                life = self.lives.lives.get(c)
                return (life is None, -life.registered_at if life else 0, c)
            return key

        def by(c: str) -> SortKey:
            return (-getattr(self.merge.figures[c], sort), c)
        return by

    def ranked(self, sort: str, limit: int) -> list[str]:
        """The first `limit` customers of the period by `sort`."""
        rank = self.ranks.get(sort)
        if rank is None:
            rank = self.ranks[sort] = TopRank(self._key(sort), max(KEEP, 2 * limit))
            rank.build(self.merge.figures)
        out = rank.first(limit)
        if out is None:
            rank.keep = max(rank.keep, 2 * limit)
            rank.build(self.merge.figures)
            out = rank.first(limit)
            assert out is not None  # just built: it holds min(keep, all) >= limit or every customer
        return out

    def summary(self, guest_orders: int) -> dict[str, Any]:
        """lists.customer_summary of the period."""
        customers = len(self.merge.figures)
        return {
            "customers": customers, "repeat_customers": self.repeat,
            "repeat_purchase_rate": round(self.repeat / customers, 6) if customers else 0.0,
            "new_customers": self.new, "returning_customers": customers - self.new, "guest_orders": guest_orders,
        }
