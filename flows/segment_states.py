"""A customer's segment state (flows/membership.py `_Customer`) as compact bytes, and back: what the
snapshot files hold of it. Pure.

Pickled, a customer cost ~1.1 KB at 100 segments (Online Retail, bench/segments_live.py), most of it
repeated: without the pickler's memo (flows/snapshot_files.py) every Entry, Totals and Period names
its class, every instant takes 9 bytes, and the entry instants of ~33 segments are mostly the few
instants of the events that moved them. Here, in one MessagePack array (msgspec, in C):

- every instant once, in a table: each as the difference from the one before it (in seconds when
  whole, so most take 3 or 5 bytes); wherever the state holds an instant it holds its index (1 byte
  up to 127). So 33 entry instants over 5 distinct ones cost ~33 + 25 bytes instead of 264;
- bit masks as little-endian bytes, the timers and entry instants as their mask and one index byte
  a bit (flows/bit_times.py);
- an entry, totals or facts as a positional array without its trailing defaults; an amount in the
  organisation's currency without its currency;
- names (stores, products, currencies) come back interned: one string for all restored customers;
- what only a customer with an input inside the lateness holds: the state before its kept steps
  (packed as the state now), the steps' inputs (an event as its fields that differ from their
  defaults, flows/event_parts.py: what the log's JSON holds in a fifth of its bytes; format 2 held
  that JSON), the recent changes. Not the state after each
  step: at 2,000 orders/s every customer is inside the lateness, and a state per step pickled was
  nine tenths of a snapshot's bytes and CPU (bench/snapshot_parts.py). flows/membership.py makes a
  step's state again from the inputs when a rewind or a settle first needs it;
- a product's facts are pickled (a few thousand products, not a million customers).

`unpack(pack(c))` equals `c` field by field but for the states of the kept steps, which come back
None (tests/test_segment_states.py), and a restored organisation decides exactly as the run that
wrote it.

Format 3 (this one): what only a customer inside the lateness holds (the state before its kept steps,
each step's input, each recent change) is packed standalone, its instants as themselves instead of
indexes into the customer's table, so that `Parts` encodes each of them once, when it is kept, and
every later snapshot of the customer copies those bytes in (msgspec.Raw) instead of packing them
again: at 2,000 orders/s a customer changes in every snapshot while its steps pile up for the
lateness (5 minutes), and packing them all again each time was half of a snapshot's CPU
(bench/snapshot_cost.py). Only the state now, which changed, is packed anew.
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Callable
from decimal import Decimal
from sys import intern
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from core.events import event_from_json
from core.rules import CustomerFacts, Entry
from core.rules.facts import Period, Totals
from core.rules.tree import ItemFilter
from flows.bit_times import BitTimes
from flows.event_parts import event_from_parts, event_parts
from flows.segment_facts import CartState

if TYPE_CHECKING:
    from flows.membership import Change, Input, State, _Customer

FORMAT = 3  # 1: the kept steps with their states, pickled; 2: the kept steps' parts indexing the table (both still read)
NEVER = -(2**63)  # flows/membership.py's _NEVER: "no evaluation yet"
_NEVER_REF = -1
_FIELDS = ("products", "categories", "brands")
_ENTRY_DEFAULTS: tuple[object, ...] = (None, 0, 0, None, [], [], [])
_TOTALS_DEFAULTS: tuple[object, ...] = (0, 0, 0, None, None, None, None, [])
_FACTS_DEFAULTS: tuple[object, ...] = (None, None, None, [], [], [], [], [], [], None, None, [])
_STATE_DEFAULTS: tuple[object, ...] = (None, _NEVER_REF, b"", None, None, [], [], None, None, _NEVER_REF)
# The fields packed, in their order (tests/test_segment_states.py checks them against the classes: a field
# added to one of them must be added here, or the test fails before a restore could lose it).
PACKED_FIELDS: dict[str, tuple[str, ...]] = {
    "_Customer": ("key", "now", "base", "base_at", "steps", "recent"),
    "State": ("facts", "at", "mask", "nexts", "entered", "carts", "cart_seq", "created_floor", "abandoned_floor",
              "attrs_at"),
    "CustomerFacts": ("first_seen", "registered", "last_active", "stores", "attributes", "orders", "refunds", "emails",
                      "open_carts", "last_cart_created", "last_cart_abandoned", "history"),
    "Entry": ("time", "currency", "amount", "units", "products", "categories", "brands"),
    "Totals": ("count", "units", "amount", "first", "last", "largest", "smallest", "bought"),
    "Period": ("start", "end", "totals"),
    "CartState": ("status", "first", "last", "due", "value", "currency"),
}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
Raw = msgspec.Raw
_T = TypeVar("_T")


def _trimmed(parts: list[Any], defaults: tuple[object, ...]) -> list[Any]:
    """The parts without their trailing defaults (a list default: any empty sequence)."""
    n = len(parts)
    while n and ((not parts[n - 1]) if isinstance(defaults[n - 1], list) else parts[n - 1] == defaults[n - 1]):
        n -= 1
    del parts[n:]
    return parts


def _padded(parts: list[Any], defaults: tuple[object, ...]) -> list[Any]:
    return parts + list(defaults[len(parts):]) if len(parts) < len(defaults) else parts


def _mask_bytes(mask: int) -> bytes:
    return mask.to_bytes((mask.bit_length() + 7) // 8, "little")


class _Packer:
    """Packs one customer: `ref` gives each instant its index in the customer's table."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.index: dict[int, int] = {}

    def ref(self, t: int) -> int:
        if t == NEVER:
            return _NEVER_REF
        i = self.index.get(t)
        if i is None:
            i = self.index[t] = len(self.index)
        return i

    def opt(self, t: int | None) -> int | None:
        return None if t is None else self.ref(t)

    def table(self) -> list[int]:
        """The instants in index order, each as its difference from the one before: doubled (the low
        bit clear) in seconds when the difference is whole seconds, else doubled plus one in ms."""
        out, prev = [], 0
        for t in self.index:
            d, prev = t - prev, t
            out.append(d // 1000 << 1 if d % 1000 == 0 else d << 1 | 1)
        return out

    def bit_times(self, b: BitTimes) -> list[Any] | None:
        if not b.mask:
            return None
        times = b.times
        for t in dict.fromkeys(times):  # the few distinct instants indexed, then every bit mapped in C
            self.ref(t)
        refs = list(map(self.index.__getitem__, times))  # a timer or an entry is never at NEVER: indexed
        return [_mask_bytes(b.mask), bytes(refs) if len(self.index) <= 256 else refs]

    def entry(self, e: Entry) -> list[Any]:
        return _trimmed([self.ref(e.time), e.amount, e.units, None if e.currency == self.currency else e.currency,
                         e.products, e.categories, e.brands], _ENTRY_DEFAULTS)

    def totals(self, t: Totals) -> list[Any]:
        bought = [[_FIELDS.index(f.field) if f.field in _FIELDS else f.field, f.name, n] for f, n in t.bought]
        return _trimmed([t.count, t.units, t.amount, self.opt(t.first), self.opt(t.last), t.largest, t.smallest,
                         bought], _TOTALS_DEFAULTS)

    def facts(self, f: object) -> object:
        if not isinstance(f, CustomerFacts):  # a product's: few of them, pickled
            return pickle.dumps(f, protocol=pickle.HIGHEST_PROTOCOL)
        attrs: list[Any] = []
        for name, value in f.attributes:
            attrs.append(name)
            big = isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64
            attrs.append([0, str(value)] if isinstance(value, Decimal) else [1, str(value)] if big else value)
        history = [[self.opt(p.start), self.opt(p.end), [self.totals(t) for t in p.totals]] for p in f.history]
        return _trimmed([self.ref(f.first_seen), self.opt(f.registered), self.opt(f.last_active), f.stores, attrs,
                         [self.entry(e) for e in f.orders], [self.entry(e) for e in f.refunds],
                         [self.ref(t) for t in f.emails], [self.entry(e) for e in f.open_carts],
                         self.opt(f.last_cart_created), self.opt(f.last_cart_abandoned), history], _FACTS_DEFAULTS)

    def state(self, s: State) -> list[Any]:
        carts = [[k, c.status, self.ref(c.first), self.ref(c.last), self.opt(c.due), c.value, c.currency]
                 for k, c in s.carts.items()]
        seqs = [x for kv in s.cart_seq.items() for x in kv]
        return _trimmed([self.facts(s.facts), self.ref(s.at), _mask_bytes(s.mask), self.bit_times(s.nexts),
                         self.bit_times(s.entered), carts, seqs, self.opt(s.created_floor),
                         self.opt(s.abandoned_floor), self.ref(s.attrs_at)], _STATE_DEFAULTS)


    def input(self, x: Input) -> list[Any]:
        """An event's input as [time, seq, cause, flags, the event's parts (flows/event_parts.py; format 2:
        its JSON)]; any other (a cart record, a product's sale, an event the log could not hold) as [its
        pickle]."""
        e = x.event
        if e is not None and x.cart is None and not x.cart_key and not x.payload and x.time == e.time:
            parts = event_parts(e)
            if parts is not None:
                return [self.ref(x.time), x.seq, x.cause, x.new_order | x.new_refund << 1, parts]
        return [pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)]

    def change(self, ch: Change, key: str) -> list[Any]:
        parts = [ch.segment, ch.change, self.ref(ch.at), ch.cause]
        return parts if ch.customer == key else [*parts, ch.customer]


class _Absolute(_Packer):
    """Packs a part on its own: an instant as itself, not as an index into a table."""

    def ref(self, t: int) -> int:
        return t


class Parts:
    """The parts of one live customer packed standalone (format 3), each kept with the object it was
    packed from and packed again only once that object is replaced. Kept states, inputs and changes are
    never changed in place (a rewind or a settle replaces them), so the same object packs the same."""

    __slots__ = ("base", "change_raws", "changes", "currency", "input_raws", "inputs")

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.base: tuple[State, Raw] | None = None
        self.inputs: list[Input] = []
        self.input_raws: list[Raw] = []
        self.changes: list[Change] = []
        self.change_raws: list[Raw] = []

    def extra(self, c: _Customer) -> list[Any]:
        """[the state before the kept steps, the steps' inputs, the recent changes], each packed or
        taken from the call before; forgets what the customer no longer holds."""
        base = None
        if c.base is not None:
            if self.base is None or self.base[0] is not c.base:
                p = _Packer(self.currency)
                state = p.state(c.base)
                self.base = (c.base, Raw(_encoder.encode([p.table(), state])))
            base = self.base[1]
        else:
            self.base = None
        key, packer = c.key, _Absolute(self.currency)
        self.inputs, self.input_raws = _reused([x for _, _, x, _ in c.steps], self.inputs, self.input_raws,
                                               lambda x: Raw(_encoder.encode(packer.input(x))))
        self.changes, self.change_raws = _reused(list(c.recent.values()), self.changes, self.change_raws,
                                                 lambda ch: Raw(_encoder.encode(packer.change(ch, key))))
        return [base, self.input_raws, self.change_raws]


def _reused(now: list[_T], before: list[_T], raws: list[Raw], encode: Callable[[_T], Raw]) -> tuple[list[_T], list[Raw]]:
    """The raws of `now`, those of the objects in `before` reused. Usually `now` is `before` with more
    at its end (list equality checks identity first: one C loop); else each object is looked up."""
    n = len(before)
    if now[:n] == before:
        return now, raws + [encode(x) for x in now[n:]]
    known = {id(x): r for x, r in zip(before, raws)}  # `before` holds them alive: ids are theirs
    return now, [known.get(id(x)) or encode(x) for x in now]


def pack(c: _Customer, currency: str, parts: Parts | None = None) -> bytes:
    """The customer as bytes (its key is the snapshot table's key, not repeated here). `parts`: the
    customer's parts packed by the call before, reused where unchanged (and kept for the next call)."""
    p = _Packer(currency)
    now = p.state(c.now)
    base_at = p.ref(c.base_at)
    extra = (parts if parts is not None else Parts(currency)).extra(c) if has_extra(c) else None
    return _encoder.encode([FORMAT, p.table(), now, base_at, extra])


class _Unpacker:
    def __init__(self, table: list[int], currency: str) -> None:
        self.currency = currency
        times, t = [], 0
        for code in table:
            t += code >> 1 if code & 1 else (code >> 1) * 1000
            times.append(t)
        self.times = times

    def time(self, r: int) -> int:
        return self.times[r]

    def at(self, r: int) -> int:
        return NEVER if r == _NEVER_REF else self.times[r]

    def opt(self, r: int | None) -> int | None:
        return None if r is None else self.times[r]

    def bit_times(self, parts: list[Any] | None) -> BitTimes:
        if parts is None:
            return BitTimes()
        mask, refs = parts
        times = self.times
        # from a list, not an iterator: an array grown by appending keeps ~12 % spare
        return BitTimes(int.from_bytes(mask, "little"), array("q", [times[r] for r in refs]))

    def entry(self, parts: list[Any]) -> Entry:
        t, amount, units, cur, products, categories, brands = _padded(parts, _ENTRY_DEFAULTS)
        return Entry(self.times[t], self.currency if cur is None else intern(cur), amount, units,
                     tuple(map(intern, products)), tuple(map(intern, categories)), tuple(map(intern, brands)))

    def totals(self, parts: list[Any]) -> Totals:
        count, units, amount, first, last, largest, smallest, bought = _padded(parts, _TOTALS_DEFAULTS)
        items = tuple((ItemFilter(_FIELDS[f] if isinstance(f, int) else f, name), n) for f, name, n in bought)
        return Totals(count, units, amount, self.opt(first), self.opt(last), largest, smallest, items)

    def facts(self, parts: object) -> Any:
        if isinstance(parts, bytes):
            return pickle.loads(parts)
        assert isinstance(parts, list)
        (seen, registered, active, stores, attrs, orders, refunds, emails, carts, created, abandoned,
         history) = _padded(parts, _FACTS_DEFAULTS)
        attributes = []
        for i in range(0, len(attrs), 2):
            v = attrs[i + 1]
            if isinstance(v, list):
                v = Decimal(v[1]) if v[0] == 0 else int(v[1])
            attributes.append((attrs[i], v))
        times = self.times
        return CustomerFacts(
            times[seen], self.opt(registered), self.opt(active), tuple(map(intern, stores)), tuple(attributes),
            tuple([self.entry(e) for e in orders]), tuple([self.entry(e) for e in refunds]),
            tuple([times[r] for r in emails]), tuple([self.entry(e) for e in carts]), self.opt(created),
            self.opt(abandoned),
            tuple([Period(self.opt(a), self.opt(b), tuple([self.totals(t) for t in ts])) for a, b, ts in history]))


    def state(self, parts: list[Any], state: type[State], read: Any = None) -> State:
        """`read`: its facts, already unpacked (Idle)."""
        facts, at, mask, nexts, entered, carts, seqs, created_floor, abandoned_floor, attrs_at = _padded(
            parts, _STATE_DEFAULTS)
        cart_states = {k: CartState(status, self.times[first], self.times[last], self.opt(due), value, cur)
                       for k, status, first, last, due, value, cur in carts}
        return state(self.facts(facts) if read is None else read, self.at(at), int.from_bytes(mask, "little"),
                     self.bit_times(nexts), self.bit_times(entered), cart_states,
                     {seqs[i]: seqs[i + 1] for i in range(0, len(seqs), 2)}, self.opt(created_floor),
                     self.opt(abandoned_floor), self.at(attrs_at))

    def input(self, parts: list[Any], input: type[Input]) -> Input:
        if len(parts) == 1:
            x: Input = pickle.loads(parts[0])
            return x
        t, seq, cause, flags, data = parts
        event = event_from_json(data) if isinstance(data, bytes) else event_from_parts(data)
        return input(self.time(t), seq, cause, event, bool(flags & 1), bool(flags & 2))

    def change(self, parts: list[Any], key: str, change: type[Change]) -> Change:
        segment, what, at, cause, *customer = parts
        return change(intern(segment), customer[0] if customer else key, what, self.time(at), cause)


def unpack(data: bytes, key: str, currency: str, state: type[State], customer: type[_Customer]) -> _Customer:
    """The customer `pack` wrote (`state` and `customer`: flows/membership.py's classes); its kept
    steps without their states (None: see the module's doc)."""
    from flows.membership import Change, Input  # here: flows/membership.py imports this module

    version, table, now, base_at, extra = _decoder.decode(data)
    if version not in (1, 2, FORMAT):
        raise ValueError(f"segment state of {key!r} is in format {version}, this storepulse reads 1 to {FORMAT}")
    u = _Unpacker(table, currency)
    c = customer(key, u.state(now, state))
    c.base_at = u.at(base_at)
    if extra is None:
        return c
    if version == 1:
        c.base, c.steps, c.recent = pickle.loads(extra)
        return c
    base, steps, recent = extra
    if version == 2:  # the parts' instants index the customer's table
        c.base = None if base is None else u.state(base, state)
    else:  # each part on its own: the base with its own table, instants as themselves elsewhere
        c.base = None if base is None else _Unpacker(base[0], currency).state(base[1], state)
        u = _AbsoluteUnpacker(currency)
    inputs = [u.input(x, Input) for x in steps]
    c.steps = [(x.time, x.seq, x, None) for x in inputs]
    changes = [u.change(ch, key, Change) for ch in recent]
    c.recent = {ch.key: ch for ch in changes}
    return c


class _AbsoluteUnpacker(_Unpacker):
    """Unpacks a part _Absolute packed (an input, a change): every instant is itself."""

    def __init__(self, currency: str) -> None:
        super().__init__([], currency)

    def time(self, r: int) -> int:
        return r


def _now_and_times(data: bytes) -> tuple[list[Any], list[int]]:
    """The packed state now, and the instants of the customer's table."""
    _, table, now, _, _ = _decoder.decode(data)
    return now, _Unpacker(table, "").times


def due_of(data: bytes) -> int | None:
    """The earliest timer of a packed customer (its `now.due()`), without unpacking it."""
    now, times = _now_and_times(data)
    nexts = now[3] if len(now) > 3 else None
    return None if nexts is None else min(times[r] for r in nexts[1])


def mask_of(data: bytes) -> int:
    """The membership mask of a packed customer (its `now.mask`), without unpacking it."""
    _, _, now, _, _ = _decoder.decode(data)
    return int.from_bytes(now[2], "little") if len(now) > 2 else 0


class Idle:
    """A packed customer that holds nothing but its state now (no kept steps, no recent changes), read
    as far as a definition needs (flows/membership.py `define`): its facts, the instant it is decided
    up to, its membership and timer masks; and its bytes again with that instant moved, without
    unpacking the rest of it (its timers, entry instants, carts) nor packing it again."""

    __slots__ = ("_base_at", "_facts", "_now", "_table", "_times", "_u", "at", "entered", "mask", "timers")

    def __init__(self, table: list[int], now: list[Any], base_at: int, currency: str) -> None:
        self._u = u = _Unpacker(table, currency)
        self._table, self._now, self._base_at, self._times = table, _padded(now, _STATE_DEFAULTS), base_at, u.times
        _, at, mask, nexts, entered = self._now[:5]
        self._facts: CustomerFacts | Any = None
        self.at: int = u.at(at)
        self.mask: int = int.from_bytes(mask, "little")
        self.timers: int = 0 if nexts is None else int.from_bytes(nexts[0], "little")  # the bits with a timer
        self.entered: int = 0 if entered is None else int.from_bytes(entered[0], "little")  # with an entry instant

    @property
    def facts(self) -> CustomerFacts | Any:
        """Its facts (a product's: ProductFacts), unpacked at the first read."""
        if self._facts is None:
            self._facts = self._u.facts(self._now[0])
        return self._facts

    @property
    def settled(self) -> bool:
        """Whether no rewind can go before its latest evaluation (`base_at` is `now.at`)."""
        return self._base_at == self._now[1] or self._u.at(self._base_at) == self.at

    def decided_at(self, t: int) -> bytes:
        """The bytes of this customer decided up to `t` (its `now.at`) with no rewind before it (`base_at`
        = `t`): what `pack` writes after a definition that changed nothing else, up to the order of the
        instants in the table (the instant is added at its end; an instant no longer used stays): it
        unpacks to the same customer. A customer's next full pack orders them again."""
        table, times = self._table, self._times
        if t in times:
            ref = times.index(t)
        else:
            d = t - (times[-1] if times else 0)
            table = [*table, d // 1000 << 1 if d % 1000 == 0 else d << 1 | 1]
            ref = len(times)
        now = list(self._now)
        now[1] = ref
        return _encoder.encode([FORMAT, table, _trimmed(now, _STATE_DEFAULTS), ref, None])

    def whole(self, key: str, state: type[State], customer: type[_Customer]) -> _Customer:
        """The customer unpacked whole (as `unpack`), its facts as already read."""
        c = customer(key, self._u.state(self._now, state, self.facts))
        c.base_at = self._u.at(self._base_at)
        return c


def idle(data: bytes, currency: str) -> Idle | None:
    """The packed customer as an Idle; None when it holds kept steps or recent changes (or was packed
    in an older format): then only a whole unpack will do."""
    version, table, now, base_at, extra = _decoder.decode(data)
    if version != FORMAT or extra is not None:
        return None
    return Idle(table, now, base_at, currency)


def has_extra(c: _Customer) -> bool:
    """Whether the customer holds what only a customer inside the lateness holds (kept steps ...)."""
    return c.base is not None or bool(c.steps) or bool(c.recent)
