"""Customer segments kept live: per customer, the facts the rules read (core/rules), membership of
every segment and a timer at the next instant time can change it. Pure: time comes in as arguments.

The organisation (flows/organisation.py) hands every event to `apply` after the profiles book has
said whether it is a new order or refund (so a redelivered event or a second report of an order is
never counted twice: flows/profiles.py recognises orders at any distance), every cart record the
carts book emits to `cart`, every control event to `define`, and each move of the watermark to
`advance`. Each returns the records it changed (core/segment_records.py).

Semantics (docs/segments.md, "Membership over time"): a customer is a member at T when the rule
holds over their events up to T with now = T. Each input (an event, a cart decision) takes effect
at an instant: the customer's timers before it fire first, each at its instant; then the segments
reading a fact it changed are evaluated at it. The book keeps, per customer, the inputs it took
since the watermark, each with the customer's state after it. An input older than the customer's
latest (out of order, within the lateness) rewinds the customer to the state before its instant and
takes it and the later inputs again in time order: the changes after that instant are recomputed,
those that no longer happen are withdrawn (their key is written again, `superseded`), so the
history does not depend on the order in which events arrived. An input at or before the watermark
(later than the lateness allows) cannot rewind: it is evaluated at the customer's latest instant.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Self

import msgspec

from core.changes import Record
from core.clock import utc_from_ms
from core.definitions import SegmentDefinition, read_definition, segment_of
from core.events import Event, Item, Kind
from core.rates import MissingRate, Rates
from core.records import Cart, RecordKind, Value
from core.rules import Context, CustomerFacts, Entry, ProductFacts, RuleError, SegmentSet, Subject, changed_inputs, fold
from core.rules.evaluate import Run
from core.rules.graph import references
from core.rules.monotone import Change as Growth
from core.rules.monotone import growth_of
from core.rules.parse import parse_rule
from core.rules.segments import STEADY_KEPT
from core.rules.tree import Rule
from core.segment_records import Segment, SegmentChange, SegmentClock, SegmentMember
from flows.bit_times import BitTimes
from flows.book import Version
from flows.customer_store import Customers
from flows.segment_facts import ABANDONED, OPEN, CartState, cart_facts, distinct, insert, person_facts
from flows.segment_states import Idle, Parts, due_of, has_extra, idle, mask_of, pack
from flows.shoppers import Shoppers

if TYPE_CHECKING:
    from flows.product_segments import ProductMembership

ENTERED, EXITED = "entered", "exited"
TIME, DEFINED = "time", "defined"
CARTS_KEPT = 8  # per customer: its open carts and its latest closed ones (a record may still correct them)
_NEVER = -(2**63)


@dataclass(frozen=True, slots=True)
class Input:
    """One thing that happened to a customer, at `time` (ms): an event, or a cart's latest record
    (`cart` None: the cart no longer names this customer)."""

    time: int
    seq: int  # arrival order: inputs of one instant are taken in it
    cause: str  # an event id, or "time"
    event: Event | None = None
    new_order: bool = False
    new_refund: bool = False
    cart_key: str = ""
    cart: CartState | None = None
    payload: tuple[object, ...] = ()  # what a subclass's input carries (flows/product_segments.py)


@dataclass(slots=True, eq=True, unsafe_hash=True)
class Change:
    """An entry or exit. Treated as immutable, but not `frozen`: a frozen dataclass's __init__ sets each
    field through object.__setattr__ (~1 us a change, 23 changes per event on Online Retail). Pickled
    as the frozen class was (a list of the fields: kept steps in snapshots hold changes)."""

    segment: str
    customer: str
    change: str
    at: int
    cause: str

    @property
    def key(self) -> str:
        return f"{self.segment}|{self.customer}|{self.at}|{self.change}"

    def __getstate__(self) -> list[object]:
        return [self.segment, self.customer, self.change, self.at, self.cause]

    def __setstate__(self, state: list[Any]) -> None:
        self.segment, self.customer, self.change, self.at, self.cause = state


@dataclass(slots=True)
class State:
    """A customer's state (copied whole into each kept step, so the mutable parts are small)."""

    facts: CustomerFacts | ProductFacts
    at: int = _NEVER  # the instant of its latest evaluation
    mask: int = 0  # bit i: member of the segment of bit i (Membership.bits)
    # Keyed by the segment's bit (Membership.bits), not its id, and packed (flows/bit_times.py): a dict per
    # customer of up to 100 instants keyed by id strings was most of the state, live and in snapshots.
    nexts: BitTimes = field(default_factory=BitTimes)  # bit -> next instant the segment's value may change
    entered: BitTimes = field(default_factory=BitTimes)  # bit of a segment it is a member of -> instant it entered
    carts: dict[str, CartState] = field(default_factory=dict)  # its latest carts by "<store>:<cart>"
    cart_seq: dict[str, int] = field(default_factory=dict)  # the arrival (seq) of each cart's latest record
    created_floor: int | None = None  # latest first activity of the carts no longer kept
    abandoned_floor: int | None = None  # latest due of the abandoned carts no longer kept
    attrs_at: int = _NEVER  # time of the latest event whose custom fields were taken

    def due(self) -> int | None:
        return self.nexts.earliest()

    def copy(self) -> State:
        return replace(self, nexts=self.nexts.copy(), entered=self.entered.copy(), carts=dict(self.carts),
                       cart_seq=dict(self.cart_seq))

    def __getstate__(self) -> tuple[object, ...]:
        return (self.facts, self.at, self.mask, self.nexts.packed(), self.entered.packed(), self.carts, self.cart_seq,
                self.created_floor, self.abandoned_floor, self.attrs_at)

    def __setstate__(self, state: tuple[object, ...] | list[object]) -> None:
        # a tuple: packed as above; a list: pickled before (dataclass default), `nexts` and `entered` dicts
        # that Membership rekeys (_bit_keyed)
        for name, value in zip(_STATE_FIELDS, state, strict=True):
            object.__setattr__(self, name, value)
        if isinstance(state, tuple):
            self.nexts = BitTimes.unpacked(state[3])  # type: ignore[arg-type]
            self.entered = BitTimes.unpacked(state[4])  # type: ignore[arg-type]


_STATE_FIELDS = tuple(f.name for f in fields(State))


@dataclass(slots=True)
class _Customer:
    key: str
    now: State
    # The state before steps[0]: None before the customer existed (base_at _NEVER), or while no step is
    # kept (base_at is then now.at and no input can rewind): it would only repeat `now`.
    base: State | None = None
    base_at: int = _NEVER  # the instant `base` is exact for: no rewind before it
    # (time, seq, input, state after it). The state is None for a step restored from a snapshot: the
    # snapshot keeps the inputs, not the states (a state per step was most of its bytes and its time);
    # Membership._state_after takes the inputs again from the one before when a rewind or settle needs it.
    steps: list[tuple[int, int, Input, State | None]] = field(default_factory=list)
    recent: dict[str, Change] = field(default_factory=dict)  # changes after base_at, by key


@dataclass(slots=True)
class Stats:
    """Counters for Prometheus (flows/dataflow.py reads and resets them)."""

    evaluations: int = 0
    changes: int = 0
    withdrawn: int = 0
    seconds: float = 0.0
    timer_evaluations: int = 0  # of `evaluations`: those at an instant a timer set (time passing, no input)
    timer_seconds: float = 0.0  # of `seconds`: the same
    unconverted: int = 0  # amounts in another currency than the organisation's, without rates: counted as 0


class Membership:
    """The live customer segments of one organisation."""

    SUBJECT = Subject.CUSTOMER
    CLOCK = True  # writes the segment clock (one book of the organisation does)

    def __init__(self, org: str, timezone: str, currency: str, definitions: Mapping[str, SegmentDefinition],
                 version: Version | None = None) -> None:
        self.org, self.timezone, self.currency = org, timezone, currency
        self.version = version or Version()
        self.definitions: dict[str, SegmentDefinition] = dict(definitions)
        self.customers = Customers(currency)  # live, or packed while idle (flows/customer_store.py)
        # the customers to hold packed once idle for an epoch: key -> their bytes (None: to pack then)
        self._cooling: dict[str, bytes | None] = {}
        self.bits: dict[str, int] = {}  # segment -> its bit in every mask
        self.counts: dict[str, int] = {}  # segment -> members now
        self.timers: list[tuple[int, str]] = []  # (instant, customer): a heap; stale entries skipped
        self.cart_owners: dict[str, str] = {}  # cart -> the customer whose carts hold it
        self.watermark: int | None = None
        self.seq = 0
        self.stats = Stats()
        self._dirty: set[str] = set(self.definitions)  # segments whose record must be emitted
        self._as_of: int | None = None  # the watermark at the latest change of any segment
        self._flushed_at: int | None = None
        self._changed: set[str] = set()  # customers changed since the last snapshot (take_changes)
        # the live customers' kept steps, base and recent changes as packed by the last snapshot: packed
        # once each, when kept, not at every snapshot (flows/segment_states.py, format 3)
        self._parts: dict[str, Parts] = {}
        # customers packed after the batch that first changed them this epoch (pack_ahead), by key: the
        # snapshot takes these bytes unless something changed the customer again since
        self._ahead: dict[str, bytes] = {}
        self.rates: Rates | None = None  # set by use_rates at every start: not part of the state
        # the facts each change of the current batch was decided on, by change key: what an automation's
        # `if` reads for segment.entered/exited (the organisation clears it after every batch and tick)
        self.change_facts: dict[str, CustomerFacts | ProductFacts] = {}
        self._iso = (_NEVER, "")  # the latest change instant and its ISO 8601 form (_change_record)
        self._build()

    _STATE: tuple[str, ...] = ("org", "timezone", "currency", "version", "definitions", "customers", "bits", "counts", "timers",
              "cart_owners", "watermark", "seq", "_dirty", "_as_of", "_flushed_at")

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self._STATE}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self.stats = Stats()
        self.rates = None
        self.change_facts = {}
        self._iso = (_NEVER, "")
        # a book pickled whole (before snapshot files held its customers): the next snapshot writes them all
        self._changed = set(self.customers)
        self._cooling, self._parts, self._ahead = {}, {}, {}
        held = self.customers
        self.customers = held if isinstance(held, Customers) else Customers(self.currency, held)
        self.customers.live = _bit_keyed(self.customers.live, self.bits)
        self._build()

    # --- the customers in snapshot files (flows/snapshots.py): a snapshot writes those that changed ------

    @property
    def table(self) -> str:
        return f"{self.SUBJECT.value}_segment_states"

    def table_names(self) -> tuple[str, ...]:
        return (self.table,)

    def held_entries(self) -> int:
        return len(self.customers)

    def tables(self) -> dict[str, dict[str, bytes]]:
        """The customers packed (flows/segment_states.py): ~0.3 KB each instead of ~1.1 KB pickled."""
        return {self.table: {k: self._pack(k, c) for k, c in self.customers.live.items()}
                | self.customers.packed}

    def _pack(self, key: str, c: _Customer) -> bytes:
        """The customer's bytes, its kept parts packed once (format 3) when it keeps steps or changes."""
        return pack(c, self.currency, self._parts_of(key) if has_extra(c) else None)

    def _parts_of(self, key: str) -> Parts:
        parts = self._parts.get(key)
        if parts is None:
            parts = self._parts[key] = Parts(self.currency)
        return parts

    def pack_ahead(self) -> int:
        """Packs the customers changed since the last call that this epoch has not packed yet, and says
        how many: called after each batch, so that the snapshot at the epoch's end (take_changes) packs
        only those changed again since. The packing is spread over the epoch instead of stalling the
        dataflow at its end (the tail of issue 10's latency); a customer changed in several batches of
        an epoch is packed twice at most."""
        live, ahead, changed = self.customers.live, self._ahead, self._changed
        fresh = [k for k in changed if k not in ahead and k in live]
        for k in fresh:
            c = live[k]
            ahead[k] = self._pack(k, c)
            changed.discard(k)  # a change after this adds it again: then packed by take_changes
        return len(fresh)

    def take_changes(self) -> dict[str, dict[str, bytes | None]]:
        """The customers changed since the last call, packed (None: one that is gone). A customer that
        nothing touched since the call before is then held packed (flows/customer_store.py), once the
        watermark has passed its kept steps (settled first, as its next input would settle it)."""
        live, packed, w = self.customers.live, self.customers.packed, self.watermark
        ahead, self._ahead = self._ahead, {}
        touched = self._changed | ahead.keys()  # changed since the last call (packed ahead or not)
        idle: list[str] = []
        waiting: dict[str, bytes | None] = {}
        for k in self._cooling.keys() - touched:
            c = live.get(k)
            if c is None:
                continue
            if w is not None and c.steps and c.steps[0][0] <= w:
                # as its next input would settle it; not written again: the files' state with the steps the
                # watermark has passed decides the same (an input behind the watermark never rewinds)
                self._settle(c, w)
                self._changed.discard(k)
            if has_extra(c):
                waiting[k] = None  # an input inside the lateness: not yet
            else:
                idle.append(k)
        changed: dict[str, bytes | None] = {}
        again = self._changed  # changed since packed ahead, or not packed ahead
        for k in touched:
            c = live.get(k)
            if c is not None:
                data = None if k in again else ahead.get(k)
                changed[k] = data if data is not None else self._pack(k, c)
            elif k in packed:  # changed, then packed again at once (_hold_packed): its bytes are exact
                changed[k] = packed[k]
            else:  # gone (a changed customer is live: reading it unpacked it)
                changed[k] = None
        # bytes kept at the call before are exact (untouched since, nothing to settle); a customer settled
        # just now is packed again
        self.customers.hold_packed({k: data if (data := self._cooling[k]) is not None else pack(live[k], self.currency)
                                    for k in idle})
        # the next call's candidates: those changed now (their bytes kept when they hold no kept step) and
        # those still waiting for the watermark
        waiting.update((k, None if has_extra(c := live[k]) else data) for k, data in changed.items()
                       if data is not None and k in live)
        self._cooling = waiting
        self._changed = set()
        # parts kept only for live customers still inside the lateness (an idle one's are in its bytes): only
        # a customer changed, or settled and packed here, can have left it
        parts = self._parts
        for k in itertools.chain(touched, idle):
            if k in parts and ((c := live.get(k)) is None or not has_extra(c)):
                del parts[k]
        return {self.table: changed}

    def without_tables(self) -> Self:
        """A copy without the customers and their timers: what a snapshot pickles beside the files."""
        small = object.__new__(type(self))  # not copy.copy: __setstate__ would rebuild the rules
        small.__dict__.update(self.__dict__)
        small.customers, small.timers, small._changed, small._cooling = Customers(self.currency), [], set(), {}
        small._parts, small._ahead = {}, {}
        return small

    def with_tables(self, tables: dict[str, dict[str, bytes | _Customer]]) -> Self:
        """Puts the restored customers back (after `without_tables`) and rebuilds their timers. With no
        table at all the book stays as unpickled (an older snapshot held the customers in it). A customer
        is packed bytes, or (written by an older storepulse) a pickled `_Customer`."""
        if self.table not in tables:
            return self
        table = tables[self.table]
        older = _bit_keyed({k: c for k, c in table.items() if not isinstance(c, bytes)}, self.bits)
        packed = {k: c for k, c in table.items() if isinstance(c, bytes)}
        # held packed as the files hold them: each is unpacked when something first touches it
        self.customers = Customers(self.currency, older, packed)
        self.timers = [(due, k) for k, c in older.items() if (due := c.now.due()) is not None]
        self.timers += [(due, k) for k, data in packed.items() if (due := due_of(data)) is not None]
        heapq.heapify(self.timers)
        self._changed, self._cooling, self._parts, self._ahead = set(), {}, {}, {}
        return self

    def _build(self) -> None:
        rules: dict[str, Rule] = {}
        for d in self.definitions.values():
            try:
                rules[d.id] = parse_rule(d.rule, currency=self.currency, timezone=self.timezone, subject=self.SUBJECT)
            except RuleError:
                continue  # checked before it was defined: a rule this version no longer reads is left out
        self.live = SegmentSet(_without_dangling(rules), Context(self.timezone, self.currency, self.rates))
        for s in self.live.order:
            if s not in self.bits:
                self.bits[s] = max(self.bits.values(), default=-1) + 1
            self.counts.setdefault(s, 0)
        self._rank = {s: i for i, s in enumerate(self.live.order)}
        self._steady_masks: dict[frozenset[tuple[str, Growth]], tuple[int, int]] = {}  # growth -> (up, down) bits
        self._live_bits = {self.bits[s]: s for s in self.live.order}  # bit -> segment, live segments only
        # segment -> (its bit, its key in Run.results, its evaluator): _evaluate_state's lookups, done once
        self._plans = {s: (self.bits[s], *self.live.plan(s)) for s in self.live.order}

    def use_rates(self, rates: Rates | None) -> None:
        """The exchange rates that convert amounts in other currencies (the dataflow's, given at each
        start; None: such amounts count as 0 and are counted in `stats.unconverted`)."""
        if rates is not self.rates:
            self.rates = rates
            self._build()

    # --- input -----------------------------------------------------------------------------------

    def apply(self, e: Event, *, new_order: bool, new_refund: str | None) -> list[Record[Value]]:
        """Folds one event in. `new_order`: an `order.paid` for an order not known before; `new_refund`:
        the customer of an `order.refunded` for a refund not known before (None: not new, or nobody's)."""
        key = e.customer or (new_refund if e.kind is Kind.ORDER_REFUNDED else None)
        if not key or (not e.customer and key not in self.customers):
            return []
        x = Input(e.time, self._next_seq(), e.id, e, new_order and e.kind is Kind.ORDER_PAID, new_refund is not None)
        return self._take(key, x)

    def cart(self, r: Record[Value], cause: str, at: int | None) -> list[Record[Value]]:
        """A cart record the carts book emitted, because of event `cause` at `at`, or (`at` None) because
        the watermark passed its due. A cart that now names someone else (or a visitor) leaves its
        former customer's carts."""
        v = r.value
        assert isinstance(v, Cart)
        out: list[Record[Value]] = []
        decided = v.due if v.status in ABANDONED and v.due is not None else v.last
        t, why = (decided, TIME) if at is None else (at, cause)
        owner = self.cart_owners.get(r.key)
        if owner is not None and owner != v.person:
            del self.cart_owners[r.key]
            out += self._take(owner, Input(t, self._next_seq(), why, cart_key=r.key))
        if not v.person or v.person not in self.customers:  # a visitor's cart: nobody the segments know (yet)
            return out
        self.cart_owners[r.key] = v.person
        state = CartState(v.status, v.first, v.last, v.due, v.value, v.currency)
        return out + self._take(v.person, Input(t, self._next_seq(), why, cart_key=r.key, cart=state))

    def define(self, e: Event) -> list[Record[Value]]:
        """A control event: a segment put or deleted. Evaluated for every customer at the watermark."""
        d = read_definition(e)
        if d is None or d.type != "segment":
            return []
        before = dict(self.definitions)
        if d.body is None:
            if self.definitions.pop(d.id, None) is None:
                return []
        else:
            s = segment_of(d)
            if s is None:
                return []
            self.definitions[d.id] = replace(s, predefined=False)
        old_rules = dict(self.live.rules)
        try:
            self._build()
        except RuleError:  # in_segment of a segment since deleted, or a cycle: the definition is refused
            self.definitions = before
            self._build()
            return []
        self._dirty.add(d.id)
        changed = {s for s in self.live.order if old_rules.get(s) != self.live.rules[s]}
        changed |= {s for s in self.live.order if _names(self.live.rules, s) & changed}
        out: list[Record[Value]] = []
        if d.body is None or d.id not in self.live.rules:
            out += self._forget(d.id)
        now = self.watermark if self.watermark is not None else max(
            (c.now.at for c in self.customers.values()), default=0)
        order = [s for s in self.live.order if s in changed]
        packed = self.customers.packed
        for key in sorted(self.customers):
            data = packed.get(key)
            held = idle(data, self.currency) if data is not None else None
            if held is not None:
                if not order:  # a deletion that changed no other segment
                    if held.settled:
                        continue  # nothing to settle: its bytes stand
                elif (moved := self._defined_idle(held, order, now)) is not None:
                    packed[key] = moved
                    self._changed.add(key)
                    continue
                else:
                    self.customers[key] = held.whole(key, State, _Customer)  # its facts read once
            c = self.customers[key]
            self._settle(c, None)  # the kept steps were taken under the old rules: no rewind before this
            if order:
                out += self._publish(c, c.now.mask, c.now.due(), self._evaluate(c, c.now, order, now, DEFINED), [])
                self._settle(c, None)  # nor before its changes, at the watermark: nothing to keep for a rewind
            if data is not None:
                self._hold_packed(key, c)
        return out

    def _defined_idle(self, held: Idle, segments: list[str], now: int) -> bytes | None:
        """A customer held packed whose membership and timers the `segments` just (re)defined leave as
        they were (most customers, for most segments: not a member, nothing in a window): its bytes, decided
        up to `now`, as the whole way below would pack them (up to the table's order); None when the
        definition moves it: then the whole way. It reads only the facts and masks, neither unpacks the
        rest nor packs anything: defining a segment over 1M idle customers is one dataflow step, which
        every organisation waits for (bench/segments_live.py --define)."""
        started = time.perf_counter()
        results = self.live.evaluate(segments, held.facts, now)
        bits, mask, timers = self.bits, held.mask, held.timers
        for g, (member, nxt) in results.items():
            b = bits[g]
            if nxt is not None or member != bool(mask >> b & 1) or timers >> b & 1:
                return None  # evaluated again the whole way (counted there)
        self.stats.evaluations += len(segments)
        self.stats.seconds += time.perf_counter() - started
        return held.decided_at(max(held.at, now))

    def _hold_packed(self, key: str, c: _Customer) -> None:
        """Packs again a customer that was held packed and that a definition had to read (at 1M customers,
        every one of them unpacked at once took ~2.3 GB until they cooled again); the next snapshot writes
        these bytes (take_changes)."""
        if not has_extra(c):
            self.customers.hold_packed({key: pack(c, self.currency)})

    def advance(self, watermark: int) -> list[Record[Value]]:
        """The watermark moved: fires every timer at or before it."""
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        return self.overdue()

    def overdue(self) -> list[Record[Value]]:
        """Fires every timer at or before the watermark, each at its instant: those a move of the
        watermark passed, and those an input taken behind it set (a late order's "ordered today"
        exit at a midnight already past), at once rather than when the watermark next moves, so the
        state at a watermark does not depend on whether an input came before or after it."""
        if self.watermark is None:
            return []
        watermark = self.watermark
        out: list[Record[Value]] = []
        while self.timers and self.timers[0][0] <= watermark:
            at, key = heapq.heappop(self.timers)
            c = self.customers.get(key)
            if c is not None and c.now.due() == at:
                mask, due = c.now.mask, c.now.due()
                out += self._publish(c, mask, due, self._fire(c, c.now, watermark), [])
        return out

    def flush(self) -> list[Record[Value]]:
        """The segment records whose definition or member count changed since the last flush, and the
        segment clock: the watermark at the latest change (membership is exact from then to the
        watermark now; it is not re-emitted at every move of the watermark, a write a second)."""
        out: list[Record[Value]] = []
        for s in sorted(self._dirty):
            d = self.definitions.get(s)
            deleted = d is None or s not in self.live.rules
            if d is None:
                d = SegmentDefinition(s, s, {})
            value = Segment(s, d.name, d.predefined, msgspec.Raw(msgspec.json.encode(d.rule)),
                            0 if deleted else self.counts.get(s, 0), deleted, self.SUBJECT.value)
            out.append(Record(self.org, self.version.next(), RecordKind.SEGMENT, s, "", value))
        self._dirty = set()
        if self.CLOCK and self._as_of != self._flushed_at:
            self._flushed_at = self._as_of
            out.append(Record(self.org, self.version.next(), RecordKind.SEGMENT_CLOCK, "", "", SegmentClock(self._as_of)))
        return out

    # --- reading ---------------------------------------------------------------------------------

    def next_due(self) -> int | None:
        """The earliest pending timer."""
        while self.timers:
            at, key = self.timers[0]
            c = self.customers.get(key)
            if c is not None and c.now.due() == at:
                return at
            heapq.heappop(self.timers)  # stale: the customer's timer moved since
        return None

    def members(self, segment: str) -> list[str]:
        bit = 1 << self.bits[segment]
        live = [k for k, c in self.customers.live.items() if c.now.mask & bit]
        return sorted(live + [k for k, data in self.customers.packed.items() if mask_of(data) & bit])

    def held(self) -> dict[str, int]:
        # steps of the live customers (a restored customer's are counted once something unpacks it)
        return {"customers": len(self.customers), "packed": len(self.customers.packed), "timers": len(self.timers),
                "segments": len(self.live.order), "steps": sum(len(c.steps) for c in self.customers.live.values())}

    # --- taking an input -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _take(self, key: str, x: Input) -> list[Record[Value]]:
        c = self.customers.get(key)
        if c is None:
                c = self.customers[key] = _Customer(key, State(self._fresh(x.time)))
        mask, due = c.now.mask, c.now.due()
        w = self.watermark
        self._settle(c, w)
        if x.time >= c.now.at or (w is not None and x.time <= w) or x.time < c.base_at:
            # in order; or too late to rewind (taken at the customer's latest instant, history kept)
            late = x.time < c.now.at
            if not late and not c.steps and c.base_at != _NEVER:
                c.base = c.now.copy()  # the first kept step: the state before it, for a rewind
            changes = self._step(c.now, x, key)
            if late:
                self._settle(c, None)
            else:
                c.steps.append((x.time, x.seq, x, c.now.copy()))
            return self._publish(c, mask, due, changes, [])
        return self._publish(c, mask, due, *self._rewind(c, x))

    def _rewind(self, c: _Customer, x: Input) -> tuple[list[Change], list[Change]]:
        """Takes `x` at its place among the kept steps: (changes to record, changes withdrawn)."""
        i = bisect.bisect_right([(t, s) for t, s, _, _ in c.steps], (x.time, x.seq))
        start = self._state_after(c, i)
        since = c.steps[i - 1][0] if i else c.base_at
        assert start is not None or since == _NEVER, "a kept step without the state before it"
        state = self._from(start, x.time)
        kept, redo = c.steps[:i], [x] + [s[2] for s in c.steps[i:]]
        changes: list[Change] = []
        for step in redo:
            changes += self._step(state, step, c.key)
            kept.append((step.time, step.seq, step, state.copy()))
        c.now, c.steps = state, kept
        old = {k: ch for k, ch in c.recent.items() if ch.at > since}
        new = {ch.key: ch for ch in changes}
        withdrawn = [ch for k, ch in old.items() if k not in new]
        for ch in withdrawn:
            del c.recent[ch.key]
        return [ch for k, ch in new.items() if k not in old], withdrawn

    def _settle(self, c: _Customer, w: int | None) -> None:
        """Forgets the steps no input can come before any more (at or before the watermark `w`; all of
        them with None): the state after the last of them becomes the base."""
        self._changed.add(c.key)
        n = len(c.steps) if w is None else bisect.bisect_right([t for t, _, _, _ in c.steps], w)
        if w is None or n == len(c.steps):
            if c.steps or w is None:
                c.base, c.base_at, c.steps = None, c.now.at, []
            else:
                return
        elif n:
            c.base, c.base_at, c.steps = self._state_after(c, n), c.steps[n - 1][0], c.steps[n:]
        else:
            return
        c.recent = {k: ch for k, ch in c.recent.items() if ch.at > c.base_at}

    def _state_after(self, c: _Customer, i: int) -> State | None:
        """The state after the first `i` kept steps (`base` for 0). The states a snapshot did not keep
        are made again, from the latest one known, by taking the same inputs again (their changes are
        already recorded: dropped). The same rules on the same inputs decide the same; the facts may come
        out folded further (the watermark has moved since), which no rule can tell apart (keep.py), as
        when a rewind takes later steps again."""
        if not i:
            return c.base
        if (known := c.steps[i - 1][3]) is not None:
            return known
        j = i - 1
        while j and c.steps[j - 1][3] is None:
            j -= 1
        start = c.steps[j - 1][3] if j else c.base
        state = self._from(start, c.steps[0][0])
        for k in range(j, i):
            t, seq, x, _ = c.steps[k]
            self._step(state, x, c.key)
            c.steps[k] = (t, seq, x, state.copy())
        return c.steps[i - 1][3]

    def _step(self, s: State, x: Input, key: str) -> list[Change]:
        """One input into a state: the timers before it, then the input at its instant."""
        changes = self._fire_state(s, x.time - 1, key) if x.time > s.at else []
        fresh = s.at == _NEVER  # a customer's first input: every segment reads something new
        before, facts = s.facts, self._facts(s, x)
        changed = changed_inputs(None if fresh else before, facts) if fresh or facts is not before else frozenset()
        s.facts = facts
        if changed:
            steady = None if fresh else growth_of(before, facts, changed, self.live.keep.items)
            changes += self._evaluate_state(s, self.live.touched(changed), max(x.time, s.at), x.cause, key, steady)
        if self.watermark is not None:
            at, f = min(self.watermark, s.at), s.facts
            s.facts = fold(f, self.live.keep, at, self.live.ctx) if isinstance(f, CustomerFacts) else fold(
                f, self.live.keep, at, self.live.ctx)
        return changes

    def _from(self, start: State | None, t: int) -> State:
        """A copy of the state a replay of kept steps starts from; a fresh one (first seen at `t`, the first
        step's instant) for a customer whose steps go back to before it existed."""
        return start.copy() if start is not None else State(self._fresh(t))

    def _fresh(self, t: int) -> CustomerFacts | ProductFacts:
        """The facts of a customer first seen at `t`, before its first input."""
        return CustomerFacts(first_seen=t)

    def _facts(self, s: State, x: Input) -> CustomerFacts | ProductFacts:
        """The facts after an input."""
        e, f = x.event, s.facts
        if e is None:
            return self._cart_input(s, x)
        assert isinstance(f, CustomerFacts)
        f = person_facts(f, e)
        if e.kind in (Kind.CUSTOMER_CREATED, Kind.CUSTOMER_UPDATED, Kind.IDENTIFIED) and e.attrs:
            if e.time < s.attrs_at:
                f = replace(f, attributes=s.facts.attributes)  # an older event's fields do not overwrite newer ones
            else:
                s.attrs_at = e.time
        if x.new_order:
            f = replace(f, orders=insert(f.orders, self._entry(e, e.items)))
        elif x.new_refund:
            f = replace(f, refunds=insert(f.refunds, self._entry(e, ())))
        elif e.kind is Kind.EMAIL_ENGAGED and e.time not in f.emails:
            f = replace(f, emails=tuple(sorted((*f.emails, e.time))))
        return f

    def _cart_input(self, s: State, x: Input) -> CustomerFacts | ProductFacts:
        assert isinstance(s.facts, CustomerFacts)
        if x.seq < s.cart_seq.get(x.cart_key, -1):
            return s.facts  # a record is the cart's whole state: one that came later stands, whatever its instant
        s.cart_seq[x.cart_key] = x.seq
        carts = dict(s.carts)
        if x.cart is None:
            carts.pop(x.cart_key, None)
        else:
            carts[x.cart_key] = x.cart
        if len(carts) > CARTS_KEPT:  # the oldest closed carts only count in the floors now
            closed = sorted((k for k, c in carts.items() if c.status != OPEN), key=lambda k: carts[k].last)
            for k in closed[:len(carts) - CARTS_KEPT]:
                c = carts.pop(k)
                s.cart_seq.pop(k, None)
                s.created_floor = max(s.created_floor or c.first, c.first)
                if c.status in ABANDONED and c.due is not None:
                    s.abandoned_floor = max(s.abandoned_floor or c.due, c.due)
        s.carts = carts
        return cart_facts(s.facts, carts, s.created_floor, s.abandoned_floor)

    def _entry(self, e: Event, items: Iterable[Item]) -> Entry:
        items = tuple(items)
        currency, amount = e.currency or self.currency, e.amount
        if currency != self.currency:
            try:
                self.live.ctx.value(amount, currency, e.time)
            except MissingRate:  # the dataflow has no rates file: count it, not its amount
                self.stats.unconverted += 1
                currency, amount = self.currency, 0
        return Entry(e.time, currency, amount, sum(i.qty for i in items), distinct(i.product for i in items),
                     distinct(i.category for i in items), distinct(i.brand for i in items))

    # --- evaluating ------------------------------------------------------------------------------

    def _fire(self, c: _Customer, s: State, until: int) -> list[Change]:
        changes = self._fire_state(s, until, c.key)
        # a timer fired after the last step: a rewind must not start from before it without it (and no
        # input can come before it any more: it fired at or before the watermark)
        self._settle(c, None)
        return changes

    def _fire_state(self, s: State, until: int, key: str) -> list[Change]:
        """The state's timers up to `until`, in time order, each evaluated at its instant."""
        out: list[Change] = []
        live = self._live_bits
        while (due := s.due()) is not None and due <= until:
            due_now = [live[b] for b in s.nexts.bits_at(due) if b in live]
            if len(due_now) > 1:
                due_now.sort(key=self._rank.__getitem__)
            elif not due_now:  # a segment no longer defined: its timer goes
                s.nexts = BitTimes.of((b, at) for b, at in s.nexts.items() if b in live)
                continue
            out += self._evaluate_state(s, due_now, due, TIME, key)
        return out

    def _evaluate(self, c: _Customer, s: State, segments: Iterable[str], now: int, cause: str) -> list[Change]:
        return self._evaluate_state(s, segments, now, cause, c.key)

    def _evaluate_state(self, s: State, segments: Iterable[str], now: int, cause: str, key: str,
                        growth: frozenset[tuple[str, Growth]] | None = None) -> list[Change]:
        """Evaluates `segments` at `now`; with the `growth` of the facts an input made, only those it
        can flip (core/rules/monotone.py)."""
        started = time.perf_counter()
        if growth is not None and (steady := self._steady_bits(s, growth, now)):
            bits = self.bits
            segments = [g for g in segments if not steady >> bits[g] & 1]
        else:
            segments = list(segments)
        # SegmentSet.evaluate, inlined: one Run (a sum or condition several segments read is computed
        # once), without a dict of results in between
        run = Run(s.facts, now, self.live.ctx)
        done, plans = run.results, self._plans
        self.stats.evaluations += len(segments)
        s.at = max(s.at, now)
        out: list[Change] = []
        nexts = s.nexts
        for g in segments:
            b, result_key, evaluator = plans[g]
            result = done.get(result_key)
            if result is None:
                result = done[result_key] = evaluator(run)
            member, nxt = result
            if nxt is None:
                if nexts.mask >> b & 1:  # most evaluations set no timer and had none: no call
                    nexts.pop(b)
            else:
                nexts[b] = nxt
            if member == bool(s.mask >> b & 1):
                continue
            s.mask ^= 1 << b
            if member:
                s.entered[b] = now
            else:
                s.entered.pop(b, None)
            out.append(Change(g, key, ENTERED if member else EXITED, now, cause))
        elapsed = time.perf_counter() - started
        self.stats.seconds += elapsed
        if cause == TIME:
            self.stats.timer_evaluations += len(segments)
            self.stats.timer_seconds += elapsed
        return out

    def _steady_bits(self, s: State, growth: frozenset[tuple[str, Growth]], now: int) -> int:
        """The bits of the segments whose membership the growth cannot change: a member of one that can
        only turn true, a non-member of one that can only turn false, unless its timer is due by `now`
        (its value at `now` is then not known from the mask)."""
        masks = self._steady_masks.get(growth)
        if masks is None:
            if len(self._steady_masks) >= STEADY_KEPT:
                self._steady_masks.clear()
            up, down = self.live.steady(growth)
            masks = self._steady_masks[growth] = (sum(1 << self.bits[g] for g in up),
                                                  sum(1 << self.bits[g] for g in down))
        steady = (masks[0] & s.mask) | (masks[1] & ~s.mask)
        due = s.nexts.earliest()
        if steady and due is not None and due <= now:
            for b, at in s.nexts.items():
                if at <= now:
                    steady &= ~(1 << b)
        return steady

    # --- records ---------------------------------------------------------------------------------

    def _publish(self, c: _Customer, mask: int, due: int | None, changes: list[Change],
                 withdrawn: list[Change]) -> list[Record[Value]]:
        """The records of a customer's changes: counts, the timer heap, each change, each membership
        that moved, and each withdrawn change written again as superseded."""
        self._changed.add(c.key)
        s = c.now
        if (next_due := s.due()) is not None and next_due != due:
            heapq.heappush(self.timers, (next_due, c.key))
        if not changes and not withdrawn and mask == s.mask:
            return []
        self._as_of = self.watermark
        out: list[Record[Value]] = []
        v = self.version.next()
        for ch in changes:
            key = ch.key
            if ch.at > c.base_at:  # a rewind may withdraw it (at or before base_at none can)
                c.recent[key] = ch
            if ch.cause != DEFINED:  # a definition's members fire no automation: no facts kept for them
                self.change_facts[key] = s.facts
            out.append(self._change_record(v, ch, False, key))
        for ch in withdrawn:
            out.append(self._change_record(v, ch, True, ch.key))
        self.stats.changes += len(changes)
        self.stats.withdrawn += len(withdrawn)
        moved = {ch.segment for ch in itertools.chain(changes, withdrawn)}
        flipped = mask ^ s.mask
        if flipped:
            segment_of = self._live_bits  # only a live segment's evaluation flips a bit
            while flipped:
                bit = (flipped & -flipped).bit_length() - 1
                flipped &= flipped - 1
                g = segment_of[bit]
                self.counts[g] += 1 if s.mask >> bit & 1 else -1
                self._dirty.add(g)
                moved.add(g)
        for g in sorted(moved):
            b = self.bits.get(g)
            if b is not None:
                member = bool(s.mask >> b & 1)
                out.append(Record(self.org, v, RecordKind.SEGMENT_MEMBER, f"{g}|{c.key}", g,
                                  SegmentMember(g, c.key, member, s.entered.get(b) if member else None)))
        return out

    def _change_record(self, version: int, ch: Change, superseded: bool, key: str) -> Record[Value]:
        if ch.at != self._iso[0]:  # the changes of one evaluation share their instant: formatted once
            self._iso = (ch.at, utc_from_ms(ch.at).isoformat(timespec="milliseconds"))
        day = f"{ch.segment}|{self._iso[1]}"
        return Record(self.org, version, RecordKind.SEGMENT_CHANGE, key, day,
                      SegmentChange(ch.segment, ch.customer, ch.change, ch.at, ch.cause, superseded))

    def _forget(self, segment: str) -> list[Record[Value]]:
        """A deleted segment: its members leave the member list (no change is recorded), its bit is freed."""
        bit = self.bits.pop(segment, None)
        self.counts.pop(segment, None)
        self._dirty.add(segment)
        if bit is None:
            return []
        out: list[Record[Value]] = []
        v = self.version.next()
        packed, flag = self.customers.packed, 1 << bit
        for key in sorted(self.customers):
            data = packed.get(key)
            if data is not None and (held := idle(data, self.currency)) is not None and held.settled and not (
                    (held.mask | held.timers | held.entered) & flag):
                continue  # nothing of the segment, nothing to settle: its bytes stand (read, not unpacked)
            c = self.customers[key]
            self._settle(c, None)
            s = c.now
            s.nexts.pop(bit, None)
            s.entered.pop(bit, None)
            if s.mask & (1 << bit):
                s.mask &= ~(1 << bit)
                out.append(Record(self.org, v, RecordKind.SEGMENT_MEMBER, f"{segment}|{key}", segment,
                                  SegmentMember(segment, key, False, None)))
            if data is not None:
                self._hold_packed(key, c)
        return out


def segment_step(segments: Membership, shoppers: Shoppers, e: Event,
                 products: ProductMembership | None = None) -> list[Record[Value]]:
    """One event through the shoppers' books and then the customer (and product) segments: the records
    they changed. What is new (an order, a refund) is asked of the profiles book before it folds the event."""
    profiles = shoppers.profiles
    new_order = e.kind is Kind.ORDER_PAID and not profiles.knows_order(e)
    refund_before = profiles.refund_total(e) if e.kind is Kind.ORDER_REFUNDED else None
    out = shoppers.apply(e)
    new_refund = None
    if e.kind is Kind.ORDER_REFUNDED and refund_before is None and profiles.refund_total(e) is not None:
        new_refund = e.customer or (profiles.order_customer(e.store, e.order) if e.order else None)
    # an e-mail sent is the shop's doing: it makes no customer and moves no segment (first seen, active)
    mine = [] if e.kind is Kind.EMAIL_SENT else segments.apply(e, new_order=new_order, new_refund=new_refund)
    if products is not None:
        mine += products.order(e, new_order)
    for r in out:
        if r.kind is RecordKind.CART:
            mine += segments.cart(r, e.id, e.time)
            if products is not None:
                mine += products.cart(r, e.id, e.time)
    return out + mine


def _names(rules: Mapping[str, Rule], segment: str) -> set[str]:
    """The segments `segment` names through in_segment, directly or not."""
    seen: set[str] = set()
    pending = [segment]
    while pending:
        for ref in references(rules[pending.pop()]):
            if ref not in seen and ref in rules:
                seen.add(ref)
                pending.append(ref)
    return seen


def _without_dangling(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The rules minus those naming (directly or not) a segment that is not defined."""
    rules = dict(rules)
    while dangling := [s for s, r in rules.items() if references(r) - rules.keys()]:
        for s in dangling:
            del rules[s]
    return rules


def _bit_keyed(customers: dict[str, _Customer], bits: Mapping[str, int]) -> dict[str, _Customer]:
    """Customers restored from a snapshot taken before states packed their timers and entry instants
    (dicts keyed by segment id, or by bit), packed; a segment without a bit any more is dropped."""
    if not any(isinstance(c.now.nexts, dict) for c in itertools.islice(customers.values(), 1)):
        return customers
    for c in customers.values():
        for st in (c.now, c.base, *(step[3] for step in c.steps)):
            if st is not None:
                old: tuple[dict[Any, int], dict[Any, int]] = (st.nexts, st.entered)  # type: ignore[assignment]
                st.nexts, st.entered = (BitTimes.of((bits[g] if isinstance(g, str) else g, at) for g, at in d.items()
                                                    if not isinstance(g, str) or g in bits) for d in old)
    return customers
