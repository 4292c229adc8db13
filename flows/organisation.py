"""Everything the dataflow keeps for one organisation: the revenue ledger and the shoppers' books
(carts, journey, attribution, profiles), fed the same events, under one watermark and one version.
Pure: the wall clock comes in as an argument.

Watermark W (never moves back):
- event time: the latest event time seen minus the organisation's `allowed_lateness` (default
  ALLOWED_LATENESS_MS; control events, core/definitions.py, move nothing). An event stamped more than
  MAX_AHEAD_MS ahead of the wall clock counts as stamped then, so one wrong clock cannot push W
  (and with it what counts as too late) into the future;
- wall clock, while live: `tick(now)` moves W to the wall clock minus the allowed lateness, once
  the organisation is armed (the dataflow has read the log to its end since it started: before
  that, events still waiting in the log would be judged "never arrived") and live (its latest event
  is at most LIVE_MS old: a replay of older history keeps pure event time, so it decides exactly as
  it would offline). It moves to whole UTC seconds for the first FINE_SPAN_MS past the event-time
  watermark, then to whole UTC minutes, up to LIVE_MS (the grid of the versions, below). So a
  quiet shop's carts are decided `abandon_after` + the lateness after their last activity, within a
  second, with no further event.

What is deterministic: a replay of the log (a restart, a rebuild) folds the same events in the same
order and decides the same way as long as nothing was decided by the wall clock. A decision the wall
clock took is one the watermark would have taken too once events caught up, unless the events it
had not seen yet change it: a cart bought before its `due` shows as abandoned until the purchase
arrives, then as purchased, as with any late event. Only events older than W minus a book's
horizon (7 days for carts and journey, the refund horizon for revenue) can be treated differently:
refused as too late after a wall-clock advance, folded in by a replay.

Too late: each book tallies per store the events it refused as older than W minus its horizon
(flows/book.py TooLate). A batch that refused any emits a "late" record (key: the store, day "")
for each store concerned: per book, how many of its events that book refused and the last one.

Versions: every record a batch or a tick changes carries
    version = events folded so far * TICKS + 2 * steps(W) (+ 1 for the tick that arms the organisation)
where steps(W) counts the points of the wall-clock grid in (event-time watermark, W]: the whole UTC
seconds up to FINE_SPAN_MS past the event-time watermark, then the whole UTC minutes (0 unless the
wall clock moved W). The grid is absolute, not relative to the event-time watermark, so:
- a W the wall clock set stays on the grid as events move the event-time watermark up behind it (a
  whole minute is a whole second), and steps(W) is exact, not rounded, for every W a batch or a tick
  holds; the same (events, W) always gets the same version, a W further along a strictly higher one;
- a tick puts W on the latest grid point at or before the wall clock minus the lateness: a restarted
  dataflow, armed at a later wall clock with the same events, puts W at or past every W the crashed
  one reached (that W was on the same grid and at or before an earlier wall clock). The earlier
  scheme rounded the batch's steps up and the tick's down, so the restarted W could be a step behind.
Invariant: after a restart, every record written from the arming tick on carries a version strictly
above every version written before the crash with as many or fewer events. With more events, by the
events term; with as many, the arming tick's W is at or past the crashed run's W and its half step
(+ 1) puts it above every version of that W. The half step is there because the state at one
(events, W) can depend on the path: before the crash, events folded behind a W the wall clock had
moved (taken at the customer's latest instant, docs/segments.md); after it, the replay folds them
by event time. Such a state can differ either way, unlike a cart (which only goes from open to
abandoned as W grows): a segment membership can enter, exit and enter again as W grows. So whatever
the crashed run wrote, a key the restarted dataflow writes from its arming tick on ends with its
current value. A key the replay wrote last, before the arming tick, is written below the crashed
run's versions (the replay keeps event time): it ends right only if both runs agree on it. The one
disagreement found (a timer set behind W by a late input fired only at W's next move, so the crashed
run wrote "member" where the replay wrote its exit) is removed: such a timer fires at once
(flows/membership.py `overdue`). Any other would need the arming tick to rewrite what the replay
wrote, at the cost of holding those keys; no test has found one (tests/test_dataflow_versions.py).
Within a run versions only grow: an event adds TICKS, a tick moves W to a later grid point (+ 2 at
least), and 2 * steps + 1 stays below TICKS. The value at a version is the state after that many
events at that W, whatever the batching (as in flows/revenue.py). tests/test_dataflow_versions.py
checks this with a read model that keeps, per key, the value of the highest version (strictly higher
replaces, as state/ does). Versions stay below 10**14 (Redis's Lua keeps numbers exactly only to 14
digits) up to about 1.5 * 10**9 events per organisation. A W restored from a snapshot of the earlier
scheme may sit off the grid: steps(W) then rounds down, and the next tick puts it back on the grid.
"""

from __future__ import annotations

import copy
from typing import Any

from core.changes import Change, Record
from core.config import Org
from core.definitions import is_control, predefined_product_segments, predefined_segments
from core.events import Event
from core.rates import Rates
from core.records import LATE_BOOKS, Late, LateBook, RecordKind, Value
from flows.attribution import TABLES as ATTRIBUTION_TABLES
from flows.automations import AutomationBook
from flows.book import DAY_MS, HOUR_MS, TooLate, Version
from flows.membership import TIME, Membership, segment_step
from flows.product_segments import ProductMembership
from flows.profiles import TABLES as PROFILE_TABLES
from flows.revenue import DEFAULT_HORIZON_MS, RevenueLedger
from flows.shoppers import Shoppers
from flows.tabled import TabledBook
from notifier.actions import Action

ALLOWED_LATENESS_MS = 5 * 60 * 1000  # the default of the organisation setting `allowed_lateness`
LIVE_MS = 7 * DAY_MS
MAX_AHEAD_MS = DAY_MS
FINE_MS, COARSE_MS, FINE_SPAN_MS = 1000, 60_000, 4 * HOUR_MS
# > 2 * the grid points in LIVE_MS + 1: 2 * (FINE_SPAN_MS / FINE_MS + (LIVE_MS - FINE_SPAN_MS) / COARSE_MS + 1) + 1
TICKS = 1 << 16


def new_segments(org: Org, version: Version) -> Membership:
    """The organisation's live segments: the predefined ones, then those its config defines."""
    return Membership(org.id, org.timezone, org.currency, {**predefined_segments(), **org.segments}, version)


def new_products(org: Org, version: Version) -> ProductMembership:
    """The organisation's live product segments: the predefined ones, if its config asks for them."""
    defined = predefined_product_segments() if org.product_segments else {}
    return ProductMembership(org.id, org.timezone, org.currency, defined, version)


class BatchVersion(Version):
    """Every record of a batch or tick gets the version set for it."""

    def next(self) -> int:
        return self.value


def _version(events: int, steps: int, arm: bool = False) -> int:
    """The version of the state after `events` events with W `steps` grid points past the event-time
    watermark; `arm`: the half step above it, for the tick that arms a (restored) organisation."""
    return events * TICKS + 2 * steps + arm


def _steps(event_time: int, watermark: int) -> int:
    """How many points of the grid above `event_time` lie in (event_time, watermark]: exact for a W on
    the grid, strictly growing along it, below TICKS // 2 up to LIVE_MS."""
    if watermark <= event_time:
        return 0
    fine_end = event_time + FINE_SPAN_MS
    if watermark <= fine_end:
        return watermark // FINE_MS - event_time // FINE_MS
    return FINE_SPAN_MS // FINE_MS + watermark // COARSE_MS - fine_end // COARSE_MS


def _grid_at_or_below(event_time: int, t: int) -> int:
    """The latest grid point above `event_time` at or before `t` (`event_time` itself if none)."""
    fine_end = event_time + FINE_SPAN_MS
    if t <= fine_end:
        point = t // FINE_MS * FINE_MS
        return point if point > event_time else event_time
    point = t // COARSE_MS * COARSE_MS
    return point if point > fine_end else fine_end // FINE_MS * FINE_MS


def _grid_above(event_time: int, t: int) -> int:
    """The first grid point above `event_time` after `t`."""
    t = max(t, event_time)
    fine_end = event_time + FINE_SPAN_MS
    if t < fine_end and (point := (t // FINE_MS + 1) * FINE_MS) <= fine_end:
        return point
    return (max(t, fine_end) // COARSE_MS + 1) * COARSE_MS


def _grid_at_or_above(event_time: int, t: int) -> int:
    """The first grid point above `event_time` at or after `t` (`event_time` itself if `t` is not after it)."""
    if t <= event_time:
        return event_time
    below = _grid_at_or_below(event_time, t)
    return below if below == t else _grid_above(event_time, t)


class Organisation:
    lateness = ALLOWED_LATENESS_MS  # a class default: what organisations pickled before the setting had
    armed_at = False  # whether W is where the tick that armed it put it (a class default for older pickles)

    def __init__(self, ledger: RevenueLedger, shoppers: Shoppers, version: BatchVersion,
                 lateness_ms: int = ALLOWED_LATENESS_MS, segments: Membership | None = None,
                 automations: AutomationBook | None = None, products: ProductMembership | None = None) -> None:
        self.ledger = ledger
        self.segments = segments or Membership(ledger.org, "UTC", "EUR", {}, version)
        self.products = products or ProductMembership(ledger.org, "UTC", "EUR", {}, version)
        self.lateness = lateness_ms
        self.shoppers = shoppers
        # what fires, fed the events and the books' decisions (flows/automations.py); `take_actions` empties it
        self.automations = automations or AutomationBook(ledger.org, ledger.timezone)
        self._version = version  # shared with the shoppers' books
        self.latest: int | None = None  # the latest event time seen, ms (capped at MAX_AHEAD_MS)
        self.watermark: int | None = None
        self.armed = False  # reset by a restore (flows/snapshots.py): a restored organisation waits to be armed again

    @classmethod
    def new(cls, org: Org, horizon_ms: int = DEFAULT_HORIZON_MS) -> Organisation:
        version = BatchVersion()
        return cls(RevenueLedger(org.id, org.timezone, org.plan_limit, horizon_ms),
                   Shoppers(org.id, org.timezone, org.abandon_after_minutes, version=version), version,
                   org.allowed_lateness_ms, new_segments(org, version), AutomationBook.new(org),
                   new_products(org, version))

    @property
    def folded(self) -> int:
        """Events folded so far: the ledger counts every event it is given, of any kind."""
        return self.ledger.version

    @property
    def version(self) -> int:
        """The version of the current state (see the module docstring)."""
        return _version(self.folded, self._steps(self.watermark), self.armed_at)

    # --- input -----------------------------------------------------------------------------------

    def apply_all(self, events: list[Event], now_ms: int | None = None) -> list[Change]:
        """Folds a batch in; every bucket and record it changed, once, with the batch's version.
        `now_ms` is the wall clock (None: trust every event time)."""
        if not events:
            return []
        ahead = None if now_ms is None else now_ms + MAX_AHEAD_MS
        latest = self.latest
        for e in events:  # the batch's version is that of its end: known before folding
            t = e.time if ahead is None or e.time <= ahead else ahead
            if (latest is None or t > latest) and not is_control(e):  # a definition moves no watermark
                latest = t
        if latest is None:  # control events alone, before any event
            version = _version(self.folded + len(events), 0)
        else:
            end_watermark = latest - self.lateness
            if self.watermark is not None and self.watermark > end_watermark:
                end_watermark = self.watermark
            version = _version(self.folded + len(events), _steps(latest - self.lateness, end_watermark))
        self._version.value = version
        self.armed_at = False
        last: dict[tuple[str, str], Record[Value]] = {}
        ledger, autos = self.ledger, self.automations
        segments = self.segments
        for e in events:
            if is_control(e):
                ledger.fold(e, self.watermark)  # counted, as every event is: versions count them
                for r in [*segments.define(e), *autos.control(e, self._version)]:
                    last[(r.kind, r.key)] = r
                continue
            t = e.time if ahead is None or e.time <= ahead else ahead
            moved = False
            if self.latest is None or t > self.latest:
                self.latest = t
                if self.watermark is None or t - self.lateness > self.watermark:
                    self.watermark, moved = t - self.lateness, True
            ledger.fold(e, self.watermark)
            records = self._segment_step(e, moved)
            advanced = self._advance_shoppers(self.watermark) if moved else None  # type: ignore[arg-type]  # moved: set
            for r in [*records, *advanced] if advanced else records:
                last[(r.kind, r.key)] = r
            if autos.automations:
                self._automate(e, records, advanced, now_ms)
        flushed = segments.flush() + self.products.flush()
        for r in flushed:
            last[(r.kind, r.key)] = r
        out: list[Change] = ledger.flush(version)
        if autos.automations:
            autos.records([*flushed, *out], now_ms)  # segment entries and exits, quota alerts
        out.extend(last.values())
        out.extend(self._late_records(version))
        segments.change_facts.clear()
        return out

    def arm(self, now_ms: int) -> list[Change]:
        """The dataflow has read the log to its end: from now on the wall clock may move W."""
        self.armed = True
        return self._tick(now_ms, arm=True)

    def tick(self, now_ms: int) -> list[Change]:
        """Moves W with the wall clock if armed and live; the decisions that takes, with a new version."""
        return self._tick(now_ms, arm=False)

    def _tick(self, now_ms: int, arm: bool) -> list[Change]:
        if not self._live(now_ms):
            return []
        assert self.latest is not None and self.watermark is not None
        event_time = self.latest - self.lateness
        point = _grid_at_or_below(event_time, now_ms - self.lateness)
        if point <= self.watermark:
            return []
        self.watermark = point
        version = _version(self.folded, _steps(event_time, point), arm)
        self._version.value = version
        self.armed_at = arm
        last: dict[tuple[str, str], Record[Value]] = {}
        records = [*self._advance_shoppers(self.watermark), *self.segments.flush(), *self.products.flush()]
        for r in records:
            last[(r.kind, r.key)] = r
        if self.automations.automations:
            self.automations.records(records, now_ms, self.shoppers.profiles.profile, self.segments.change_facts.get)
            self.automations.advance(self.watermark, now_ms)
        self.segments.change_facts.clear()
        out: list[Change] = self.ledger.advance(self.watermark, version)
        out.extend(last.values())
        return out

    def next_wake(self, now_ms: int) -> int | None:
        """When (wall clock, ms) a tick would decide the next cart or segment timer, if the wall clock can move W."""
        if not self._live(now_ms):
            return None
        assert self.latest is not None
        event_time = self.latest - self.lateness
        cart, action = self.shoppers.carts.next_due(), self.automations.next_due()
        timer = min((t for t in (self.segments.next_due(), self.products.next_due()) if t is not None), default=None)
        # W must pass a cart's or a waiting action's due; a segment timer fires once W reaches it
        points = ([] if cart is None else [_grid_above(event_time, cart)]) + (
            [] if timer is None else [_grid_at_or_above(event_time, timer)]) + (
            [] if action is None else [_grid_above(event_time, action)])
        if not points:
            return None
        at = min(points) + self.lateness
        return None if at > self.latest + LIVE_MS else max(at, now_ms)

    def with_segments(self, org: Org) -> Organisation:
        """Itself, given the config's segments if it was restored from a snapshot taken before segments
        were kept (their membership then starts from the events that follow)."""
        if "segments" not in vars(self):
            self.segments = new_segments(org, self._version)
        if "products" not in vars(self):
            self.products = new_products(org, self._version)
        return self

    def use_rates(self, rates: Rates | None) -> Organisation:
        """Itself, converting other currencies in segment rules and automations' `if` with `rates` (the
        process's, given at every start: rates are configuration, not state)."""
        self.segments.use_rates(rates)
        self.products.use_rates(rates)
        self.automations.use_rates(rates)
        return self

    # --- what a snapshot takes (flows/snapshots.py writes it) --------------------------------------

    def without_tables(self) -> Organisation:
        """A shallow copy without the large tables (the ledger's, the profiles', the attribution's, the segments' customers
        and products): what a snapshot pickles beside its files."""
        small = copy.copy(self)
        small.ledger = self.ledger.without_tables()
        small.shoppers = copy.copy(self.shoppers)
        small.shoppers.profiles = self.shoppers.profiles.without_tables()
        small.shoppers.attribution = self.shoppers.attribution.without_tables()
        small.segments = self.segments.without_tables()
        small.products = self.products.without_tables()
        return small

    def _tabled(self) -> tuple[TabledBook, ...]:
        """The books with large tables (flows/tabled.py)."""
        return self.ledger, self.shoppers.profiles, self.shoppers.attribution, self.segments, self.products

    def tables(self) -> dict[str, dict[Any, Any]]:
        """Every large table by its name in the snapshot files."""
        return {name: table for book in self._tabled() for name, table in book.tables().items()}

    def held_entries(self) -> int:
        """How many entries the large tables hold (without building the profiles' tables)."""
        return sum(book.held_entries() for book in self._tabled())

    def take_changes(self) -> dict[str, dict[Any, Any]]:
        """The entries of the large tables changed since the last call."""
        return {name: changed for book in self._tabled() for name, changed in book.take_changes().items()}

    def with_tables(self, tables: dict[str, dict[Any, Any]]) -> Organisation:
        """Puts restored tables back (after `without_tables`)."""
        for book in self._tabled():
            book.with_tables({name: tables[name] for name in book.table_names() if name in tables})
        return self

    def keeps(self, table: str, key: object, value: object) -> bool:
        """Whether an entry of the large tables is still held (the ledger's forgetting rules; profiles are
        never forgotten; a segment state or an open order of None is one that is gone)."""
        if table in PROFILE_TABLES:
            return value is not None
        if table in (self.segments.table, self.products.table) or table in ATTRIBUTION_TABLES:
            return value is not None
        return self.ledger.keeps(table, key, value, self.ledger.watermark)

    def pack_ahead(self) -> int:
        """Packs the segment states changed by the last batch or tick ahead of the snapshot (Membership.pack_ahead):
        how many."""
        return self.segments.pack_ahead() + self.products.pack_ahead()

    def take_actions(self) -> list[Action]:
        """The automations' actions released since the last call (for the outbox)."""
        return self.automations.take()

    def held(self) -> dict[str, int]:
        return {**{f"ledger_{k}": v for k, v in self.ledger.held().items()}, **self.shoppers.held(),
                **{f"segments_{k}": v for k, v in self.segments.held().items()},
                **{f"product_segments_{k}": v for k, v in self.products.held().items()}, **self.automations.held()}

    def too_late(self) -> dict[str, TooLate]:
        """What each book refused as too late, by the book's name in LATE_BOOKS."""
        s = self.shoppers
        return dict(zip(LATE_BOOKS, (self.ledger.late, s.carts.late, s.journey.late, s.attribution.late), strict=True))

    # --- internals -------------------------------------------------------------------------------

    def _advance_shoppers(self, watermark: int) -> list[Record[Value]]:
        """The shoppers' books and the segments at a new watermark: carts decided feed the segments."""
        out = self.shoppers.advance(watermark)
        for r in list(out):
            if r.kind is RecordKind.CART:
                out += self.segments.cart(r, TIME, None) + self.products.cart(r, TIME, None)
        return out + self.segments.advance(watermark) + self.products.advance(watermark)

    def _segment_step(self, e: Event, moved: bool) -> list[Record[Value]]:
        """One event through the shoppers' books and the segments. Unless it moved W, an input behind W
        may have set a timer W has passed: it fires now (flows/membership.py `overdue`)."""
        records = segment_step(self.segments, self.shoppers, e, self.products)
        if not moved:
            records += self.segments.overdue() + self.products.overdue()
        return records

    def _automate(self, e: Event, records: list[Record[Value]], advanced: list[Record[Value]] | None,
                  now_ms: int | None) -> None:
        """The automations see an event, what it changed, and what the watermark it moved decided."""
        autos, profile, facts = self.automations, self.shoppers.profiles.profile, self.segments.change_facts.get
        autos.event(e, now_ms, profile)
        autos.records(records, now_ms, profile, facts)
        if advanced is not None:
            assert self.watermark is not None
            autos.records(advanced, now_ms, profile, facts)
            autos.advance(self.watermark, now_ms)

    def _live(self, now_ms: int) -> bool:
        """Whether the wall clock may move W: armed, and the latest event at most LIVE_MS old."""
        return self.armed and self.latest is not None and self.latest >= now_ms - LIVE_MS

    def _steps(self, watermark: int | None) -> int:
        if watermark is None or self.latest is None:
            return 0
        return _steps(self.latest - self.lateness, watermark)

    def _late_records(self, version: int) -> list[Record[Late]]:
        """A "late" record (key: the store, day "") for each store that had an event refused as too late
        since the last call: per book that refused any of its events, how many and the last one."""
        books = self.too_late()
        stores: set[str] = set()
        for late in books.values():
            stores |= late.take_changed()
        out = []
        for store in sorted(stores):
            value = Late(store, {book: LateBook(r.count, r.last_time, r.last_id)
                                 for book, late in books.items() if (r := late.stores.get(store)) is not None})
            out.append(Record(self.ledger.org, version, RecordKind.LATE, store, "", value))
        return out

