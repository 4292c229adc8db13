"""Customer profiles per organisation: one compact, always-current profile per customer. Pure.

A customer is a `customer` value that an event names (events naming only a `visitor` name nobody).
Everything below is a function of the set of events, never of the order they arrived in, so
duplicates and disorder cannot move it (within the window described under "State bound"):

- first_seen: the earliest time of any event naming the customer; store: that event's store (on a
  tie, the smallest store id);
- registered: the earliest of: the time of a `customer.created` event, the vendor's creation time
  on a `customer.created`/`customer.updated` (attrs `created_at` in ms, or Stripe's `created` in s),
  the time of an `identified` event. None when there is none; registered_at = registered, else
  first_seen;
- email / name: from the latest (by time) `customer.created`, `customer.updated` or `identified`
  event that carries one (attrs `email`; attrs `name`, else `first_name` + `last_name`); on a tie
  the greater value. When none carries one: from the latest order, cart or checkout event (BUYER)
  that carries one (attrs `email`; attrs `customer_name`: the adapters put there what the buyer
  typed at the checkout), the same way. At most 254 and 128 characters (longer values are cut);
- last_active: the latest time of an event naming the customer, except `customer.updated`,
  `order.refunded`, `order.cancelled` and `order.restored` (the shop's doing, not the customer's);
- paid orders: an order is (store, `order`, else the event id) with at least one `order.paid`
  report. Its amount, currency, items and paid time are those of its earliest report by (time, id),
  as in the revenue ledger; it belongs to the customer named by its earliest report (by (time, id))
  that names one, else it is a guest order and on no profile;
- money, per (store, currency of the order): orders, items (sum of quantities), gross (sum of
  amounts, minor units), first_paid / last_paid (earliest / latest paid time), refunds;
- refunds: a refund (store, `refund`, else the event id) counts with its largest reported total
  (vendors report running totals), in the currency of its reports, on the customer of its order;
  a refund that names no order (a credit note) counts on the customer it names.

Records (absolute values, each with a new organisation version): "customer", key the customer,
day the local day of registered_at. Guest orders have no record: they are the organisation's paid
orders (the revenue buckets) minus the profiles' orders.

State bound. Per customer: one `bytes` blob (the numbers above packed, with e-mail and name) and its
key: ~330 B a customer at 1M customers, all told (bench/profiles.py). Per paid order, for ever: a
64-bit fingerprint of (store, order) and its customer's slot, 12 B (FingerprintMap), so that a later
report of the order (a retry, an overlapping backfill) is recognised at any distance and a refund
that names only its order (Shopify's do) finds its customer weeks later. Per refund name, for ever:
its fingerprint and largest total, 16 B. An order's full facts (every report merged: an earlier
report can still move its amount, time or customer) are held only while it is open, until the
watermark W passes its paid time + `keep` (7 days); then it is final and only its fingerprint stays
(its share is in its customer's numbers already). A report of a final order changes nothing, and a
report of an unknown order whose time is before W - keep (a backfill) makes it final at once. So a
copy of a report (the event log drops a repeated event id only within its 30-day dedupe window,
state/log.py; later it may append it again) changes nothing at any distance, and since every vendor
adapter gives all reports of one payment one event id, only an events-API client reporting one order
under two ids, the second after the first is final, can make the profile differ from the definition
above. A refund whose order has no paid report yet waits until W passes max(its time, W when it
arrived) + `keep`; if the order is still unknown then, it counts nowhere (`unmatched_refunds`; a copy
of it waits and counts there again). Two different orders'
fingerprints collide with probability n^2 / 2^65 for n orders in the organisation (~3e-6 at 10M).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator
from hashlib import blake2b
from itertools import accumulate
from operator import attrgetter
from typing import Any

from core.changes import Record
from core.events import BUYER_EMAIL, BUYER_NAME, Event, Kind, full_name
from core.records import Customer, CustomerMoney, RecordKind, Value
from flows.book import DEFAULT_KEEP_MS, HOUR_MS, Days, Version

EMAIL_CHARS, NAME_CHARS = 254, 128
NONE = -(2**63)  # "no time" inside packed numbers (and below every real one)
GUEST = 0xFFFFFFFF  # the slot of an order that names no customer
CONTACT = frozenset({Kind.CUSTOMER_CREATED, Kind.CUSTOMER_UPDATED, Kind.IDENTIFIED})
# Orders, carts and checkouts carry the buyer's e-mail and name as typed at the checkout (core/events.py
# buyer_attrs): a guest has no other. They are kept with their time lowered by BUYER_BELOW, so any
# detail an account event gives wins over them (and a profile packed before them reads the same).
BUYER = frozenset({Kind.ORDER_PLACED, Kind.ORDER_PAID, Kind.CART_UPDATED, Kind.CHECKOUT_STARTED,
                   Kind.CHECKOUT_COMPLETED, Kind.CHECKOUT_EXPIRED})
BUYER_BELOW = 2**62  # event times are far below it (ms since 1970), and NONE below all
NOT_ACTIVITY = frozenset({Kind.CUSTOMER_UPDATED, Kind.ORDER_REFUNDED, Kind.ORDER_CANCELLED, Kind.ORDER_RESTORED,
                          Kind.PRODUCT_UPDATED})

# A profile blob: HEAD, then `entries` x ENTRY, then the e-mail and name as UTF-8.
# HEAD: registered, first_seen, last_active, email time, name time, store, entries, email bytes, name bytes
_HEAD = struct.Struct("<qqqqqHHHH")
# ENTRY: store, currency, then over all its orders (open and final): orders, items, gross, refunds,
# first_paid, last_paid; then first and last paid time over its final orders only (to recompute the
# span when an open order leaves or moves earlier)
_ENTRY = struct.Struct("<HHIqqqqqqq")
STORE, CUR, ORDERS, ITEMS, GROSS, REFUNDS, FIRST, LAST, FINAL_FIRST, FINAL_LAST = range(10)
_EMPTY = (0, 0, 0, 0, NONE, NONE, NONE, NONE)
_STORE_CURRENCY = attrgetter("store", "currency")
# The book's large tables in snapshot files (beside the ledger's, hence the prefix). No profile, final order
# or refund total is ever dropped; an open order is written again as None once it is final (a restore drops it).
PROFILES, FINAL_ORDERS, REFUND_TOTALS = "profiles", "profile_final_orders", "profile_refund_totals"
OPEN_ORDERS = "profile_open_orders"  # the orders of the window: pickled whole into every snapshot before
TABLES = (PROFILES, FINAL_ORDERS, REFUND_TOTALS, OPEN_ORDERS)


def fingerprint(*parts: str) -> int:
    """A stable 64-bit fingerprint (Python's hash() changes between processes; snapshots outlive them)."""
    return int.from_bytes(blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "little")


class FingerprintMap:
    """fingerprint (u64) -> one fixed-width integer, packed 8 + width bytes an entry.

    Entries live in 2^k bytearrays picked by the fingerprint's top bits; a lookup is one
    `bytearray.find` in one bucket. 13 B an entry at 1M entries against 42 B for a dict's own table
    (tracemalloc; the dict's int keys cost more on top), and it pickles as a few hundred byte strings
    instead of millions of objects.
    """

    __slots__ = ("_entry", "_value", "_bits", "_buckets", "count")
    _PER_BUCKET = 128  # average entries per bucket before the buckets double

    def __init__(self, value_format: str) -> None:
        self._entry = struct.Struct("<Q" + value_format)
        self._value = struct.Struct("<" + value_format)
        self._bits = 8
        self._buckets = [bytearray() for _ in range(1 << self._bits)]
        self.count = 0

    def __getstate__(self) -> tuple[str, int, int, list[bytearray]]:
        return self._value.format[1:], self._bits, self.count, self._buckets

    def __setstate__(self, state: tuple[str, int, int, list[bytearray]]) -> None:
        fmt, self._bits, self.count, self._buckets = state
        self._entry, self._value = struct.Struct("<Q" + fmt), struct.Struct("<" + fmt)

    def _find(self, fp: int) -> tuple[bytearray, int]:
        bucket = self._buckets[fp >> (64 - self._bits)]
        key, size = fp.to_bytes(8, "little"), self._entry.size
        i = bucket.find(key)
        while i > 0 and i % size:  # a match that straddles entries
            i = bucket.find(key, i + 1)
        return bucket, i

    def get(self, fp: int) -> int | None:
        bucket, i = self._find(fp)
        return None if i < 0 else self._value.unpack_from(bucket, i + 8)[0]

    def put(self, fp: int, value: int) -> None:
        bucket, i = self._find(fp)
        if i >= 0:
            self._value.pack_into(bucket, i + 8, value)
            return
        bucket += self._entry.pack(fp, value)
        self.count += 1
        if self.count > self._PER_BUCKET << self._bits:
            self._grow()

    def items(self) -> Iterator[tuple[int, int]]:
        for bucket in self._buckets:
            yield from self._entry.iter_unpack(bucket)

    def _grow(self) -> None:
        self._bits += 1
        shift, buckets = 64 - self._bits, [bytearray() for _ in range(1 << self._bits)]
        for old in self._buckets:
            for fp, value in self._entry.iter_unpack(old):
                buckets[fp >> shift] += self._entry.pack(fp, value)
        self._buckets = buckets


class _Profile:
    """One profile, unpacked for the length of one `apply`. Its money entries are decoded only when
    asked for: most events (views, carts) touch the head alone."""

    __slots__ = ("reg", "seen", "active", "email_t", "name_t", "store", "email", "name", "_entries", "_raw")

    def __init__(self, store: int, seen: int) -> None:
        self.reg = self.active = self.email_t = self.name_t = NONE
        self.seen, self.store = seen, store
        self.email = self.name = self._raw = b""
        self._entries: list[list[int]] | None = []

    @classmethod
    def load(cls, blob: bytes) -> _Profile:
        p = cls.__new__(cls)
        p.reg, p.seen, p.active, p.email_t, p.name_t, p.store, n, le, ln = _HEAD.unpack_from(blob)
        at = _HEAD.size + n * _ENTRY.size
        p._raw, p._entries = blob[_HEAD.size:at], None
        p.email, p.name = blob[at:at + le], blob[at + le:at + le + ln]
        return p

    @property
    def entries(self) -> list[list[int]]:
        if self._entries is None:
            self._entries = [list(e) for e in _ENTRY.iter_unpack(self._raw)]
        return self._entries

    @entries.setter
    def entries(self, value: list[list[int]]) -> None:
        self._entries = value

    def dump(self) -> bytes:
        entries = self._entries
        raw = self._raw if entries is None else b"".join([_ENTRY.pack(*e) for e in entries])
        head = _HEAD.pack(self.reg, self.seen, self.active, self.email_t, self.name_t, self.store,
                          len(raw) // _ENTRY.size, len(self.email), len(self.name))
        return b"".join((head, raw, self.email, self.name))

    def entry(self, store: int, currency: int) -> list[int]:
        for e in self.entries:
            if e[STORE] == store and e[CUR] == currency:
                return e
        e = [store, currency, *_EMPTY]
        self.entries.append(e)
        return e


class _Open:
    """An order still inside the window: every report merged, as the revenue ledger does. In the snapshot
    files as a plain tuple (`packed`), without a class reference each."""

    __slots__ = ("fp", "store", "time", "id", "amount", "currency", "units", "named", "slot", "refunds")

    def __init__(self, fp: int, store: int, time: int, id_: str, amount: int, currency: int, units: int) -> None:
        self.fp, self.store = fp, store
        self.time, self.id, self.amount, self.currency, self.units = time, id_, amount, currency, units
        self.named: tuple[int, str] | None = None  # (time, id) of its earliest report naming a customer
        self.slot = GUEST
        self.refunds: dict[int, int] = {}  # currency -> refunded on this order

    def packed(self) -> tuple[object, ...]:
        # the refunds in their order: it is the order in which _contribute adds entries to the blob
        return (self.store, self.time, self.id, self.amount, self.currency, self.units, self.named, self.slot,
                tuple(self.refunds.items()))

    @classmethod
    def unpacked(cls, fp: int, packed: tuple[Any, ...]) -> _Open:
        store, time, id_, amount, currency, units, named, slot, refunds = packed
        o = cls(fp, store, time, id_, amount, currency, units)
        o.named, o.slot, o.refunds = named, slot, dict(refunds)
        return o


def _text(value: object, limit: int) -> bytes:
    return value.strip()[:limit].encode() if isinstance(value, str) else b""


def _ms(value: object, scale: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value * scale < 10**14:
        return value * scale
    return None


class ProfileBook:
    """The customer profiles of one organisation.

    `apply(event)` folds one event in and returns the "customer" records it changed;
    `advance(watermark_ms)` moves the watermark: orders older than the window become final and
    unmatched refunds are dropped. No profile figure depends on the watermark, so it emits nothing.
    """

    def __init__(self, org: str, timezone: str, keep_ms: int = DEFAULT_KEEP_MS, version: Version | None = None) -> None:
        self.org = org
        self.days = Days(timezone)
        self.keep = keep_ms
        self.version = version or Version()
        self.watermark: int | None = None
        self.unmatched_refunds = 0  # refunds dropped because their order never arrived within the window
        self.stores: list[str] = []
        self.currencies: list[str] = []
        self.keys: list[str] = []  # slot -> customer
        self.blobs: list[bytes] = []  # slot -> packed profile
        self.orders = FingerprintMap("I")  # final order -> its customer's slot (GUEST: nobody's)
        self.refunds = FingerprintMap("q")  # refund name -> largest total counted
        self.open: dict[int, _Open] = {}
        self.open_of: dict[int, dict[int, _Open]] = {}  # slot -> its open orders by fingerprint
        self._closing: list[tuple[int, int]] = []  # (paid time + keep, order fingerprint)
        # order -> refund name -> [deadline, largest total, currency]: refunds waiting for their order
        self.pending: dict[int, dict[int, list[int]]] = {}
        self._swept = -(2**62)
        # What changed since the last snapshot (take_changes): the large tables are written to snapshot
        # files entry by entry (flows/snapshot_files.py), so a snapshot costs what changed, not 1M profiles.
        self._dirty: dict[str, set[int]] = {t: set() for t in TABLES}
        self._filed: set[int] = set()  # the open orders the snapshot files hold (only those are written as None)
        self._index()

    def _index(self) -> None:
        self._slot = {k: i for i, k in enumerate(self.keys)}
        self._store_ix = {s: i for i, s in enumerate(self.stores)}
        self._cur_ix = {c: i for i, c in enumerate(self.currencies)}
        self._work: dict[int, _Profile] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "blobs" in state and isinstance(state["blobs"], tuple):  # pickled whole by an older storepulse
            if isinstance(self.keys, str):
                self.keys = self.keys.split("\x00") if self.keys else []
            sizes, data = state["blobs"]
            ends = list(accumulate(sizes))
            self.blobs = [data[a:b] for a, b in zip([0, *ends], ends)]
            # nothing of it is in snapshot files yet: the next snapshot writes it all
            self._dirty = {PROFILES: set(range(len(self.keys))), FINAL_ORDERS: {fp for fp, _ in self.orders.items()},
                           REFUND_TOTALS: {fp for fp, _ in self.refunds.items()}}
        for t in TABLES:  # pickled before open orders were a table (with_tables marks them)
            self._dirty.setdefault(t, set())
        self.__dict__.setdefault("_filed", set())
        self._index()

    # --- the large tables, for snapshot files (flows/snapshots.py) -----------------------------------

    def tables(self) -> dict[str, dict[int, Any]]:
        """The large tables as dicts (built: the book keeps them packed), for rewriting the files whole."""
        return {PROFILES: {slot: (key, self.blobs[slot]) for slot, key in enumerate(self.keys)},
                FINAL_ORDERS: dict(self.orders.items()), REFUND_TOTALS: dict(self.refunds.items()),
                OPEN_ORDERS: {fp: o.packed() for fp, o in self.open.items()}}

    def table_names(self) -> tuple[str, ...]:
        return TABLES

    def held_entries(self) -> int:
        return len(self.keys) + self.orders.count + self.refunds.count + len(self.open)

    def take_changes(self) -> dict[str, dict[int, Any]]:
        """The entries changed since the last call: profiles by slot (key, blob), final orders' slots and
        refund totals by fingerprint, open orders by fingerprint (None: final since)."""
        d = self._dirty
        out: dict[str, dict[int, Any]] = {PROFILES: {slot: (self.keys[slot], self.blobs[slot]) for slot in d[PROFILES]},
               FINAL_ORDERS: {fp: self.orders.get(fp) for fp in d[FINAL_ORDERS]},
               REFUND_TOTALS: {fp: self.refunds.get(fp) for fp in d[REFUND_TOTALS]},
               OPEN_ORDERS: {}}
        opened, filed = out[OPEN_ORDERS], self._filed
        for fp in d[OPEN_ORDERS]:
            o = self.open.get(fp)
            if o is not None:
                opened[fp] = o.packed()
                filed.add(fp)
            elif fp in filed:  # final since it was written; one that opened and closed between snapshots is not
                opened[fp] = None
                filed.remove(fp)
        self._dirty = {t: set() for t in TABLES}
        return out

    def without_tables(self) -> ProfileBook:
        """A shallow copy without the large tables: what a snapshot pickles beside the files."""
        small = ProfileBook.__new__(ProfileBook)  # not copy.copy: it would call __setstate__, which re-indexes
        small.__dict__.update(self.__dict__)
        small.keys, small.blobs = [], []
        small.orders, small.refunds = FingerprintMap("I"), FingerprintMap("q")
        small.open, small.open_of, small._closing, small._filed = {}, {}, [], set()
        small._dirty = {t: set() for t in TABLES}
        small._slot, small._work = {}, {}
        return small

    def with_tables(self, tables: dict[str, dict[int, Any]]) -> ProfileBook:
        """Puts restored tables back (after `without_tables`). With no tables at all the book stays as
        unpickled: it has no customers yet, or an older storepulse pickled it whole (see __setstate__)."""
        if not any(tables.values()):
            return self
        profiles = tables.get(PROFILES, {})
        assert sorted(profiles) == list(range(len(profiles))), "profile slots are dense: none is ever dropped"
        self.keys = [profiles[slot][0] for slot in range(len(profiles))]
        self.blobs = [profiles[slot][1] for slot in range(len(profiles))]
        self.orders, self.refunds = FingerprintMap("I"), FingerprintMap("q")
        for fp, slot in tables.get(FINAL_ORDERS, {}).items():
            self.orders.put(fp, slot)
        for fp, total in tables.get(REFUND_TOTALS, {}).items():
            self.refunds.put(fp, total)
        if OPEN_ORDERS in tables:
            self.open = {fp: _Open.unpacked(fp, v) for fp, v in tables[OPEN_ORDERS].items() if v is not None}
        else:  # none in the files: none open, or (an older snapshot) pickled with the book: the next snapshot writes them
            self._dirty[OPEN_ORDERS] |= set(self.open)
        self.open_of = {}
        for fp, o in self.open.items():
            self.open_of.setdefault(o.slot, {})[fp] = o
        self._closing = [(o.time + self.keep, fp) for fp, o in self.open.items()]  # one entry each: none stale
        self._filed = set(tables.get(OPEN_ORDERS, {})) & self.open.keys()
        heapq.heapify(self._closing)
        self._index()
        return self

    # --- input -----------------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Record[Value]]:
        """Folds one event in; the records of the customers whose profile it changed."""
        if event.kind is Kind.EMAIL_SENT:
            return []  # the shop's doing, not the customer's: no profile, no activity
        if event.customer:
            self._person(event)
        if event.kind is Kind.ORDER_PAID:
            self._paid(event)
        elif event.kind is Kind.ORDER_REFUNDED:
            self._refund(event)
        changed = self._save()  # every figure lives in the blobs: a changed blob is a changed record
        slots = sorted(changed, key=self.keys.__getitem__) if len(changed) > 1 else changed
        return [self._record(slot, changed[slot]) for slot in slots]

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward (never back); makes orders final. Emits nothing (see class)."""
        if self.watermark is not None and watermark_ms <= self.watermark:
            return []
        self.watermark = watermark_ms
        while self._closing and self._closing[0][0] < watermark_ms:
            _, fp = heapq.heappop(self._closing)
            o = self.open.get(fp)
            if o is not None and self._final(o.time):  # else a stale entry: the order closed earlier
                self._close(o)
        if watermark_ms - self._swept >= HOUR_MS:  # unmatched refunds: swept once per hour of watermark
            self._swept = watermark_ms
            for fp in list(self.pending):
                self._expire(fp)
        self._save()  # closing moves numbers from open orders into blobs: no value changes
        return []

    # --- reading ---------------------------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """How much state is held: for gauges and bound checks."""
        return {"customers": len(self.keys), "open_orders": len(self.open), "final_orders": self.orders.count,
                "refund_names": self.refunds.count, "pending_refunds": sum(map(len, self.pending.values()))}

    def knows_order(self, e: Event) -> bool:
        """Whether a paid report of the order an event names was folded already (open or final): a
        later report of it, at any distance, is not a new order."""
        fp = fingerprint(e.store, e.order or e.id)
        return fp in self.open or self.orders.get(fp) is not None

    def order_customer(self, store: str, order: str) -> str | None:
        """The customer a paid order belongs to (None: a guest order, or not paid yet)."""
        fp = fingerprint(store, order)
        o = self.open.get(fp)
        slot = o.slot if o is not None else self.orders.get(fp)
        return None if slot is None or slot == GUEST else self.keys[slot]

    def refund_total(self, e: Event) -> int | None:
        """The largest total counted so far for the refund an `order.refunded` event names (None: none)."""
        return self.refunds.get(fingerprint(e.store, "refund", e.refund or e.id))

    def profile(self, customer: str) -> Customer | None:
        """The current value of a customer's record (None: never named)."""
        slot = self._slot.get(customer)
        return None if slot is None else self._value(slot, _Profile.load(self.blobs[slot]))

    # --- internals -------------------------------------------------------------------------------

    def _final(self, paid_ms: int) -> bool:
        return self.watermark is not None and self.watermark > paid_ms + self.keep

    def _intern(self, names: list[str], index: dict[str, int], name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(names)
            names.append(name)
        return i

    def _save(self) -> dict[int, _Profile]:
        """Packs the profiles this step unpacked; those whose blob changed."""
        changed = {}
        for slot, p in self._work.items():
            blob = p.dump()
            if blob != self.blobs[slot]:
                self.blobs[slot] = blob
                self._dirty[PROFILES].add(slot)
                changed[slot] = p
        self._work = {}
        return changed

    def _load(self, slot: int) -> _Profile:
        p = self._work.get(slot)
        if p is None:
            p = self._work[slot] = _Profile.load(self.blobs[slot])
        return p

    def _person(self, e: Event) -> None:
        """First seen, registration, contact and activity: every event naming the customer."""
        assert e.customer is not None
        store = self._intern(self.stores, self._store_ix, e.store)
        slot = self._slot.get(e.customer)
        if slot is None:
            slot = self._slot[e.customer] = len(self.keys)
            self.keys.append(e.customer)
            self.blobs.append(b"")
            p = self._work[slot] = _Profile(store, e.time)
        else:
            p = self._load(slot)
        if e.time < p.seen or (e.time == p.seen and e.store < self.stores[p.store]):
            p.seen, p.store = e.time, store
        if e.kind not in NOT_ACTIVITY:
            p.active = max(p.active, e.time)
        a = e.attrs
        if a and e.kind in BUYER:  # the contact details typed at a checkout: below any the account gives
            self._contact(p, e.time - BUYER_BELOW, a.get(BUYER_EMAIL), a.get(BUYER_NAME))
        if e.kind not in CONTACT:
            return
        if e.kind is Kind.IDENTIFIED:
            registered: tuple[int | None, ...] = (e.time,)  # attrs are the site's own properties
        else:
            vendor = (_ms(a.get("created_at"), 1), _ms(a.get("created"), 1000))  # Shopify/Woo ms, Stripe s
            registered = (e.time, *vendor) if e.kind is Kind.CUSTOMER_CREATED else vendor
        for at in registered:
            if at is not None and (p.reg == NONE or at < p.reg):
                p.reg = at
        whole = a.get("name") if isinstance(a.get("name"), str) and a["name"].strip() else full_name(
            a.get("first_name"), a.get("last_name"))
        self._contact(p, e.time, a.get("email"), whole)

    @staticmethod
    def _contact(p: _Profile, key: int, email_value: object, name_value: object) -> None:
        """Takes an e-mail and a name whose (key, value) is greater than the profile's: the key is the
        event's time, lowered by BUYER_BELOW for an order's or checkout's details."""
        email = _text(email_value, EMAIL_CHARS)
        if email and (key, email) > (p.email_t, p.email):
            p.email_t, p.email = key, email
        name = _text(name_value, NAME_CHARS)
        if name and (key, name) > (p.name_t, p.name):
            p.name_t, p.name = key, name

    def _paid(self, e: Event) -> None:
        fp = fingerprint(e.store, e.order or e.id)
        named = self._slot[e.customer] if e.customer else GUEST
        units = sum([i.qty for i in e.items])
        o = self.open.get(fp)
        self._dirty[OPEN_ORDERS].add(fp)  # a report of an open order or a new one (of a final one: written as None)
        if o is None:
            if self.orders.get(fp) is not None:
                return  # a repeat report of a final order
            store = self._intern(self.stores, self._store_ix, e.store)
            cur = self._intern(self.currencies, self._cur_ix, e.currency)
            o = _Open(fp, store, e.time, e.id, e.amount, cur, units)
            if named != GUEST:
                o.named, o.slot = (e.time, e.id), named
            self.open[fp] = o
            self.open_of.setdefault(o.slot, {})[fp] = o
            heapq.heappush(self._closing, (o.time + self.keep, fp))
            self._contribute(o, 1)
            self._expire(fp)
            for name, (_, total, rcur) in self.pending.pop(fp, {}).items():
                self._count_refund(name, total, rcur, o, None)
            if self._final(o.time):
                self._close(o)  # a backfilled order: final at once, and its refunds with it
            return
        if self._final(o.time):
            return  # due to close at the next advance: final already
        report = (e.time, e.id)
        earlier = report < (o.time, o.id)  # it now says how much, when and what
        names_first = named != GUEST and (o.named is None or report < o.named)  # it now says whose
        if names_first:
            o.named = report
        if not earlier and not (names_first and named != o.slot):
            return
        self._contribute(o, -1)
        if earlier:
            o.time, o.id, o.amount, o.units = e.time, e.id, e.amount, units
            o.currency = self._intern(self.currencies, self._cur_ix, e.currency)
            heapq.heappush(self._closing, (o.time + self.keep, fp))
        if names_first and named != o.slot:
            mine = self.open_of[o.slot]
            del mine[fp]
            if not mine:
                del self.open_of[o.slot]
            o.slot = named
            self.open_of.setdefault(named, {})[fp] = o
        self._contribute(o, 1)

    def _contribute(self, o: _Open, sign: int) -> None:
        """Adds (1) or takes back (-1) an open order's share of its customer's money."""
        if o.slot == GUEST:
            return
        p = self._load(o.slot)
        e = p.entry(o.store, o.currency)
        e[ORDERS] += sign
        e[ITEMS] += sign * o.units
        e[GROSS] += sign * o.amount
        for cur, refunded in o.refunds.items():
            p.entry(o.store, cur)[REFUNDS] += sign * refunded
        if sign > 0:
            e[FIRST] = o.time if e[FIRST] == NONE else min(e[FIRST], o.time)
            e[LAST] = max(e[LAST], o.time)
            return
        # first/last are not undone by subtraction: recompute them from the final orders' and the open ones'
        others = [x for x in self.open_of.get(o.slot, {}).values() if x is not o]
        for x in p.entries:
            times = [y.time for y in others if y.store == x[STORE] and y.currency == x[CUR]]
            x[FIRST] = min([t for t in (x[FINAL_FIRST], *times) if t != NONE], default=NONE)
            x[LAST] = max([x[FINAL_LAST], *times])
        p.entries = [x for x in p.entries if x[ORDERS] or x[REFUNDS] or x[ITEMS] or x[GROSS]]

    def _refund(self, e: Event) -> None:
        name = fingerprint(e.store, "refund", e.refund or e.id)
        cur = self._intern(self.currencies, self._cur_ix, e.currency)
        store = self._intern(self.stores, self._store_ix, e.store)
        if not e.order:
            if e.customer:
                self._count_refund(name, e.amount, cur, None, (self._slot[e.customer], store))
            return  # a refund of no order and no customer is on no profile
        fp = fingerprint(e.store, e.order)
        o = self.open.get(fp)
        if o is not None:
            self._count_refund(name, e.amount, cur, o, None)
            return
        slot = self.orders.get(fp)
        if slot is None:  # its order has no paid report yet: wait `keep` of watermark for it
            held = self.pending.setdefault(fp, {}).get(name)
            if held is None:
                deadline = max(e.time, self.watermark if self.watermark is not None else e.time) + self.keep
                self.pending[fp][name] = [deadline, e.amount, cur]
            elif e.amount > held[1]:
                held[1:] = [e.amount, cur]
        else:
            self._count_refund(name, e.amount, cur, None, (slot, store))

    def _count_refund(self, name: int, total: int, cur: int, o: _Open | None, final: tuple[int, int] | None) -> None:
        """Counts a refund's increase on an open order (it moves with the order), or on a customer's (slot, store)."""
        increase = total - (self.refunds.get(name) or 0)
        if increase <= 0:
            return  # a repeat, or an older report of a refund we know more of
        self.refunds.put(name, total)
        self._dirty[REFUND_TOTALS].add(name)
        if o is not None:
            o.refunds[cur] = o.refunds.get(cur, 0) + increase
            self._dirty[OPEN_ORDERS].add(o.fp)
            final = (o.slot, o.store)
        if final is not None and final[0] != GUEST:
            self._load(final[0]).entry(final[1], cur)[REFUNDS] += increase

    def _expire(self, fp: int) -> None:
        """Drops the refunds that waited for this order longer than `keep` of watermark."""
        held = self.pending.get(fp, {})
        waiting = {n: r for n, r in held.items() if self.watermark is None or self.watermark <= r[0]}
        self.unmatched_refunds += len(held) - len(waiting)
        if waiting:
            self.pending[fp] = waiting
        else:
            self.pending.pop(fp, None)

    def _close(self, o: _Open) -> None:
        """The order is final: its numbers go into its customer's blob; only its fingerprint stays."""
        del self.open[o.fp]
        mine = self.open_of[o.slot]
        del mine[o.fp]
        if not mine:
            del self.open_of[o.slot]
        self.orders.put(o.fp, o.slot)
        self._dirty[FINAL_ORDERS].add(o.fp)
        self._dirty[OPEN_ORDERS].add(o.fp)
        if o.slot != GUEST:  # its share is in the money already: only the final span moves
            e = self._load(o.slot).entry(o.store, o.currency)
            e[FINAL_FIRST] = o.time if e[FINAL_FIRST] == NONE else min(e[FINAL_FIRST], o.time)
            e[FINAL_LAST] = max(e[FINAL_LAST], o.time)

    def _value(self, slot: int, p: _Profile) -> Customer:
        """The record's value: the profile's numbers, its money by store and currency."""
        money, orders, items, first, last = [], 0, 0, NONE, NONE
        for e in p.entries:
            money.append(CustomerMoney(self.stores[e[STORE]], self.currencies[e[CUR]], e[ORDERS], e[ITEMS], e[GROSS],
                                       e[REFUNDS], _opt(e[FIRST]), _opt(e[LAST])))
            orders, items = orders + e[ORDERS], items + e[ITEMS]
            if e[ORDERS]:
                first = e[FIRST] if first == NONE else min(first, e[FIRST])
                last = max(last, e[LAST])
        if len(money) > 1:
            money.sort(key=_STORE_CURRENCY)
        return Customer(
            customer=self.keys[slot], store=self.stores[p.store], registered=_opt(p.reg), first_seen=p.seen,
            registered_at=p.reg if p.reg != NONE else p.seen, last_active=_opt(p.active),
            email=p.email.decode() or None, name=p.name.decode() or None, orders=orders, items=items,
            first_paid=_opt(first), last_paid=_opt(last), money=money,
        )

    def _record(self, slot: int, p: _Profile) -> Record[Customer]:
        value = self._value(slot, p)
        return Record(self.org, self.version.next(), RecordKind.CUSTOMER, self.keys[slot],
                      self.days.of(value.registered_at), value)


def _opt(t: int) -> int | None:
    return None if t == NONE else t
