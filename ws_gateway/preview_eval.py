"""A rule evaluated for every customer at once over the preview's columns (ws_gateway/preview_columns.py).

The same answer as ws_gateway/segment_preview.py's `preview` over `customer_facts` of the same
records (each criterion exactly as core/rules/evaluate.py reads the facts those records give, see
docs/segments.md "Preview"), computed as a handful of numpy passes per condition instead of a
Python loop per customer. Pure: columns, rule and `now` in, (count, first members) out.

What the columns cannot answer exactly raises `Unsupported` (the caller falls back to the slow
path, which answers or refuses as it always did): a stream other than the orders (and lifetime
refund amounts), categories and brands, attributes, more stores than STORE_BITS, a comparison with a
non-whole number, an open cart in a currency without a rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from core.rules import Context
from core.rules.tree import (
    After,
    AllOf,
    AnyEntry,
    AnyOf,
    Attribute,
    Before,
    Compare,
    Current,
    Exists,
    InSegment,
    Label,
    Measure,
    Moment,
    Not,
    On,
    Op,
    Rule,
    Sum,
    Tally,
    Window,
)
from ws_gateway.preview_columns import I64, NONE, STATUS, Bools, PreviewColumns
from ws_gateway.segment_preview import PREVIEW_MEMBERS

_FIRST, _LAST = "first", "last"


class Unsupported(Exception):
    """The columns cannot answer this rule exactly: use the slow path."""


def preview_columns(rule: Rule, cols: PreviewColumns, now: int, ctx: Context, buyers_only: bool,
                    cache: dict[Any, Any] | None = None) -> tuple[int, list[str]]:
    """How many customers the rule holds for at `now`, and the first PREVIEW_MEMBERS by key: those
    with a profile, or with `buyers_only` (segment_preview.buyers_only) those with a paid order.
    `cache` keeps what depends on the columns alone (per-customer aggregates) while `cols.generation`
    stands."""
    run = _Run(cols, now, ctx, cache if cache is not None else {})
    mask = run.rule(rule)
    mask &= (run.order_count() > 0) if buyers_only else cols.customers.view("has_profile")
    return int(np.count_nonzero(mask)), _first(mask, cols)


def _first(mask: Bools, cols: PreviewColumns) -> list[str]:
    """The first PREVIEW_MEMBERS member keys in key order: the ranked slots are in key order, those
    appended since are few and sorted here."""
    keys = cols.keys
    ranked = [keys[i] for i in np.flatnonzero(mask[:cols.ranked])[:PREVIEW_MEMBERS]]
    later = sorted(keys[i] for i in np.flatnonzero(mask[cols.ranked:]) + cols.ranked)
    return sorted(ranked + later)[:PREVIEW_MEMBERS] if later else ranked


class _Run:
    def __init__(self, cols: PreviewColumns, now: int, ctx: Context, cache: dict[Any, Any]) -> None:
        self.cols, self.now, self.ctx = cols, now, ctx
        if cache.get("generation") != cols.generation:
            cache.clear()
            cache["generation"] = cols.generation
        self.cache = cache  # aggregates of the columns (no `now` in them)
        self.n = cols.customers.n
        self.segments: dict[str, Bools] = {}

    def rule(self, rule: Rule) -> Bools:
        if isinstance(rule, AllOf | AnyOf):
            parts = [self.rule(r) for r in rule.rules]
            return _bools(np.logical_and.reduce(parts) if isinstance(rule, AllOf) else np.logical_or.reduce(parts))
        if isinstance(rule, Not):
            return ~self.rule(rule.rule)
        if isinstance(rule, Tally):
            return _compare(rule.compare, self.tally(rule.sum))
        if isinstance(rule, AnyEntry):
            return self.any_entry(rule)
        if isinstance(rule, Moment):
            return self.moment(rule)
        if isinstance(rule, Current):
            return _compare(rule.compare, self.stores_count() if rule.criterion == "stores" else self.open_cart_value())
        if isinstance(rule, Label):
            return self.label(rule)
        if isinstance(rule, InSegment):
            return self.in_segment(rule)
        assert isinstance(rule, Attribute)
        raise Unsupported("attributes are not in the preview's columns")

    # --- aggregates of the columns (kept in the cache) ----------------------------------------

    def _kept(self, key: Any, compute: Callable[[], Any]) -> Any:
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = compute()
        return found

    def _orders(self) -> tuple[I64, I64]:
        """The paid orders with a customer: (row, slot)."""
        def compute() -> tuple[I64, I64]:
            slot = self.cols.orders.view("slot")
            rows = np.flatnonzero(slot >= 0)
            return rows, slot[rows]
        found: tuple[I64, I64] = self._kept("orders", compute)
        return found

    def order_count(self) -> I64:
        found: I64 = self._kept("order_count", lambda: np.bincount(self._orders()[1], minlength=self.n))
        return found

    def _order_time(self, which: str) -> I64:
        """Per customer, the time of the first or last paid order (NONE: none)."""
        def compute() -> I64:
            rows, slots = self._orders()
            times = self.cols.orders.view("time")[rows]
            if which == _LAST:
                out = np.full(self.n, NONE, np.int64)
                np.maximum.at(out, slots, times)
                return out
            out = np.full(self.n, np.iinfo(np.int64).max, np.int64)
            np.minimum.at(out, slots, times)
            out[out == np.iinfo(np.int64).max] = NONE
            return out
        found: I64 = self._kept(("order_time", which), compute)
        return found

    def _cart_time(self, which: str) -> I64:
        """Per customer: the latest first activity of its carts, or the latest due of one counted abandoned."""
        def compute() -> I64:
            t = self.cols.carts
            slot = t.view("slot")
            if which == "created":
                keep, times = slot >= 0, t.view("first")
            else:
                status, due = t.view("status"), t.view("due")
                keep, times = (slot >= 0) & ((status == STATUS["abandoned"]) | (status == STATUS["recovered"])) & (due != NONE), due
            out = np.full(self.n, NONE, np.int64)
            np.maximum.at(out, slot[keep], times[keep])
            return out
        found: I64 = self._kept(("cart_time", which), compute)
        return found

    def open_cart_value(self) -> I64:
        def compute() -> I64:
            t = self.cols.carts
            keep = (t.view("slot") >= 0) & (t.view("status") == STATUS["open"])
            if np.any(t.view("unconvertible")[keep] & self._counted(t.view("slot")[keep])):
                raise Unsupported("an open cart's currency has no rate")
            out = np.zeros(self.n, np.int64)
            np.add.at(out, t.view("slot")[keep], t.view("open_value")[keep])
            return out
        found: I64 = self._kept("open_cart_value", compute)
        return found

    def _counted(self, slots: I64) -> Bools:
        has_profile: Bools = self.cols.customers.view("has_profile")[slots]
        return has_profile

    def store_bits(self) -> npt.NDArray[np.uint64]:
        """Per customer, its stores as bits: the profile's, and those of its carts (with a profile only)."""
        if self.cols.too_many_stores:
            raise Unsupported("more stores than the preview's columns hold")

        def compute() -> npt.NDArray[np.uint64]:
            out = self.cols.customers.view("stores").copy()
            t = self.cols.carts
            slot, store = t.view("slot"), t.view("store")
            for bit in np.unique(store[slot >= 0]):
                seen = np.bincount(slot[(slot >= 0) & (store == bit)], minlength=self.n) > 0
                out[seen] |= np.uint64(1 << int(bit))
            return out
        found: npt.NDArray[np.uint64] = self._kept("store_bits", compute)
        return found

    def stores_count(self) -> I64:
        return np.bitwise_count(self.store_bits()).astype(np.int64)

    # --- conditions ------------------------------------------------------------------------------

    def _in_window(self, w: Window, times: I64) -> Bools:
        keep = np.ones(len(times), np.bool_)
        if w.within is not None:
            keep &= times > self.now - w.within
        if w.since is not None:
            keep &= times >= w.since
        if w.until is not None:
            keep &= times < w.until
        return keep

    def tally(self, s: Sum) -> I64:
        total = np.zeros(self.n, np.int64)
        rows, slots = self._orders()
        for term in s.terms:
            if term.stream == "refunds" and term.measure is Measure.AMOUNT and s.window == Window() and s.item is None:
                total += term.sign * self.cols.customers.view("refunded")
                continue
            if term.stream != "orders":
                raise Unsupported(f"the {term.stream} stream is not in the preview's columns")
            o = self.cols.orders
            if s.item is not None:
                if s.item.field != "products":
                    raise Unsupported(f"an order's {s.item.field} are not in the preview's columns")
                rows_, slots_ = self._bought(s.item.name)
            else:
                rows_, slots_ = rows, slots
            keep = self._in_window(s.window, o.view("time")[rows_])
            if term.measure is Measure.COUNT:
                total += term.sign * np.bincount(slots_[keep], minlength=self.n)
            else:
                add = np.zeros(self.n, np.int64)
                np.add.at(add, slots_[keep], o.view("units" if term.measure is Measure.UNITS else "value")[rows_][keep])
                total += term.sign * add
        return total

    def _bought(self, product: str) -> tuple[I64, I64]:
        """The paid orders with a customer whose lines name the product: (row, slot)."""
        def compute() -> tuple[I64, I64]:
            pid = self.cols.products.get(product)
            if pid is None:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            p, o = self.cols.pairs, self.cols.orders
            order = p.view("order")
            hit = (p.view("product") == pid)
            rows = order[hit][p.view("gen")[hit] == o.view("gen")[order[hit]]]
            slots = o.view("slot")[rows]
            return rows[slots >= 0], slots[slots >= 0]
        found: tuple[I64, I64] = self._kept(("bought", product), compute)
        return found

    def any_entry(self, node: AnyEntry) -> Bools:
        if node.stream != "orders":
            raise Unsupported(f"the {node.stream} stream is not in the preview's columns")
        rows, slots = self._orders()
        o = self.cols.orders
        keep = self._in_window(node.window, o.view("time")[rows]) & _compare(node.compare, o.view("value")[rows])
        return np.bincount(slots[keep], minlength=self.n) > 0

    def _time(self, criterion: str) -> I64:
        c = self.cols.customers
        if criterion == "last_order_at":
            return self._order_time(_LAST)
        if criterion == "first_order_at":
            return self._order_time(_FIRST)
        if criterion == "registered_at":
            registered = c.view("registered")
            return np.where(registered != NONE, registered, c.view("first_seen"))
        if criterion == "last_active_at":
            return c.view("last_active")
        if criterion == "last_cart_created_at":
            return self._cart_time("created")
        if criterion == "last_abandoned_cart_at":
            return self._cart_time("abandoned")
        raise Unsupported(f"{criterion} is not in the preview's columns")

    def moment(self, node: Moment) -> Bools:
        t, test, now = self._time(node.criterion), node.test, self.now
        present = t != NONE
        if isinstance(test, Exists):
            return _bools(present if test.present else ~present)
        if isinstance(test, Before | After):
            if test.ago is None:
                assert test.at is not None
                return _bools(present & ((t < test.at) if isinstance(test, Before) else (t >= test.at)))
            # before: now >= t + ago; after: now < t + ago (core/rules/evaluate.py _moment)
            return _bools(present & ((t <= now - test.ago) if isinstance(test, Before) else (t > now - test.ago)))
        assert isinstance(test, On)
        if test.days_ago is None:
            assert test.start is not None and test.end is not None
            return _bools(present & (t >= test.start) & (t < test.end))
        # the local day of t plus days_ago is now's local day: t falls on the day days_ago before now's
        day = self.ctx.day(now) - test.days_ago
        return _bools(present & (t >= self.ctx.midnight(day)) & (t < self.ctx.midnight(day + 1)))

    def label(self, node: Label) -> Bools:
        bits, c = self.store_bits(), node.compare
        names = c.value if isinstance(c.value, tuple) else (c.value,)
        wanted = np.uint64(0)
        for name in names:
            bit = self.cols.stores.get(str(name))
            if bit is not None:
                wanted |= np.uint64(1 << bit)
        at = (bits & wanted) != 0
        return _bools(~at if c.op is Op.NE else at)

    def in_segment(self, node: InSegment) -> Bools:
        c = node.compare
        ids = c.value if isinstance(c.value, tuple) else (c.value,)
        parts = [self.segment(str(i), self.ctx.segments) for i in ids]
        if c.op is Op.NE:
            return ~parts[0]
        return _bools(np.logical_or.reduce(parts))

    def segment(self, segment: str, segments: Mapping[str, Rule]) -> Bools:
        found = self.segments.get(segment)
        if found is None:
            rule = segments.get(segment)
            if rule is None:
                raise KeyError(f'in_segment names "{segment}", which is not a segment of this organisation')
            found = self.segments[segment] = self.rule(rule)
        return found


def _compare(c: Compare, x: I64) -> Bools:
    """A number per customer (count, units, minor units) against a comparison (core/rules/evaluate.py _compare)."""
    op, v = c.op, c.value
    if op is Op.BETWEEN:
        assert isinstance(v, tuple)
        low, high = _whole(v[0]), _whole(v[1])
        return _bools((x >= low) & (x <= high))
    if op is Op.IN:
        assert isinstance(v, tuple)
        return np.isin(x, np.array([_whole(i) for i in v], np.int64))
    w = _whole(v)
    if op is Op.EQ:
        return _bools(x == w)
    if op is Op.NE:
        return _bools(x != w)
    if op is Op.GT:
        return _bools(x > w)
    if op is Op.GTE:
        return _bools(x >= w)
    if op is Op.LT:
        return _bools(x < w)
    return _bools(x <= w)


def _bools(x: Any) -> Bools:
    """numpy's stubs type comparisons as Any: a bool array, typed."""
    out: Bools = np.asarray(x, dtype=np.bool_)
    return out


def _whole(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or abs(v) >= 2**62:
        raise Unsupported(f"{v!r} is not a whole number the columns compare")
    return v
