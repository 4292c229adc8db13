"""Carts per organisation: open, abandoned, recovered and bought carts, decided by the watermark. Pure.

A cart is the set of events that name it (`store`, `cart`). Its state is a function of that set and
of the watermark, never of the order the events arrived in, so duplicates and disorder cannot move it:

- activity: `cart.updated` (the whole cart: `items`, `amount` its value), `cart.item_added` /
  `cart.item_removed` (item lines, `qty` added or removed), `checkout.started` (the whole cart when
  it has `items`, otherwise activity only). A cart exists once it has an activity event;
- contents: the latest snapshot by (time, id) (`cart.updated`, or `checkout.started` with items),
  plus every add and minus every removal after it, per product. Lines with a quantity above zero
  are in the cart. Its value is the snapshot's `amount` while nothing was added or removed after it,
  else the sum of qty x unit price over its lines (each line at the latest unit price given for it);
  each line's product is named by the latest activity item that names it;
- bought: the earliest `checkout.completed` or `order.paid` that names the cart in `cart` (an order
  closes a cart only through its `cart` field; vendor adapters set it from the checkout/session);
- abandonment time `due`: `abandon_after` after the last activity, or the earliest
  `checkout.expired` (the vendor's own verdict) at or after the last activity if that is sooner;
- status:
  purchased  bought at or before `due` (never abandoned; a late purchase corrects a decision);
  empty      not that, and no line left: not a cart with items, counted nowhere;
  recovered  bought after `due` (and at most `keep` after it), once the watermark passed `due`;
  abandoned  not bought by `due`, once the watermark is past `due`;
  open       not yet decided: the watermark has not passed `due`. (A cart bought after `due` shows
             as purchased until the watermark passes `due`, then as recovered.)

The watermark W promises that every event with time < W has arrived: a cart is decided when W > due.

Records (absolute values, each with a new organisation version):
- "cart", key "<store>:<cart>", day = local day of its first activity: the cart itself;
- "cart_day", key "<store>|<day>|<currency>": counters of the carts whose first activity is on that
  day (carts = open + abandoned + purchased; abandoned includes recovered), with their values;
- "open_carts", key "<store>|<currency>", day "": the carts open now and their value;
- "abandoned_product", key "<store>|<day>|<product>": in how many abandoned (or recovered) carts of
  that day the product was.

State bound: a cart is forgotten once W > max(due, its latest event) + keep (its final record was
emitted); an event older than W - keep is too late and ignored (counted in `too_late`, per store in `late`), so every
event of a forgotten cart is too late, a copy of one included. A cart with purchase or expiry events
but no activity is forgotten once W > its latest event + keep. Day counters are dropped once no held
cart belongs to the day and the day ended before W - keep.
"""

from __future__ import annotations

import heapq
from bisect import insort
from dataclasses import dataclass, field
from typing import Any

from core import records
from core.changes import Record
from core.events import Event, Kind, buyer_of
from core.records import AbandonedProduct, CartDay, OpenCarts, RecordKind, Value
from flows.book import DEFAULT_KEEP_MS, HOUR_MS, MINUTE_MS, Days, TooLate, Version

ACTIVITY = frozenset({Kind.CART_UPDATED, Kind.CART_ITEM_ADDED, Kind.CART_ITEM_REMOVED, Kind.CHECKOUT_STARTED})
PURCHASE = frozenset({Kind.CHECKOUT_COMPLETED, Kind.ORDER_PAID})
CART_KINDS = ACTIVITY | PURCHASE | {Kind.CHECKOUT_EXPIRED}

OPEN, ABANDONED, RECOVERED, PURCHASED, EMPTY = "open", "abandoned", "recovered", "purchased", "empty"

DAY_FIELDS = CartDay.__struct_fields__[2:]  # cart_day counters, in this order (after store, currency)
_SNAPSHOT, _ADD, _REMOVE, _TOUCH = 0, 1, -1, 2

# (product, qty, unit price, name): a line reduced from one event's item (lines kept by a storepulse before
# names were kept have no name: read with `*name`)
Lines = tuple[tuple[str, int, int, str], ...]
# One activity event, reduced: (time, id, op, lines, amount, currency, person, buyer); acts kept by a
# storepulse before buyers were kept have 7 elements
Act = tuple[int, str, int, Lines, int, str, str | None, str]


@dataclass(slots=True)
class View:
    """What a cart's activity says: contents and when."""

    lines: dict[str, tuple[int, int]]  # product -> (qty > 0, unit price)
    names: dict[str, str]  # product -> the latest name an event gave it (only the products in `lines`)
    value: int
    currency: str
    person: str | None
    first: int
    last: int
    buyer: str = ""  # the name (else e-mail) the latest activity naming one typed at the checkout


@dataclass(slots=True)
class Cart:
    store: str
    cart: str
    ids: set[str] = field(default_factory=set)
    acts: list[Act] = field(default_factory=list)  # sorted by (time, id)
    paid: int | None = None  # time of the earliest purchase event
    expiries: list[int] = field(default_factory=list)
    latest: int = 0  # latest time of any of its events
    view: View | None = None
    # what it last contributed to the counters: ((store, day, currency), status, value, products)
    contrib: tuple[tuple[str, str, str], str, int, tuple[str, ...]] | None = None
    shown: records.Cart | None = None  # the value of its last "cart" record
    wake: set[int] = field(default_factory=set)  # the times it is scheduled at in CartBook._wake

    def due(self, abandon_after_ms: int) -> int | None:
        """When the cart is abandoned if nothing buys it by then (None: no activity)."""
        if self.view is None:
            return None
        last = self.view.last
        due = last + abandon_after_ms
        for x in self.expiries:
            if last <= x < due:
                due = x
        return due


def _contents(acts: list[Act]) -> View:
    snap = max((i for i, a in enumerate(acts) if a[2] == _SNAPSHOT), default=-1)
    lines: dict[str, list[int]] = {}
    if snap >= 0:
        for product, qty, price, *_ in acts[snap][3]:
            line = lines.setdefault(product, [0, price])
            line[0] += qty
            line[1] = price
    changed = False
    for a in acts[snap + 1:]:
        if a[2] in (_ADD, _REMOVE):
            for product, qty, price, *_ in a[3]:
                line = lines.setdefault(product, [0, price])
                line[0] += a[2] * qty
                line[1] = price
                changed = True
    kept = {p: (q, u) for p, (q, u) in sorted(lines.items()) if q > 0}
    names = {}  # from every activity, the snapshot's and earlier too: a removal or an add may name no product
    for a in acts:
        for product, _, _, *name in a[3]:
            if name and name[0] and product in kept:
                names[product] = name[0]
    if not kept:
        value = 0
    elif snap >= 0 and not changed:
        value = acts[snap][4]
    else:
        value = sum(q * u for q, u in kept.values())
    currency = next((a[5] for a in reversed(acts) if a[5]), "")
    person = next((a[6] for a in reversed(acts) if a[6]), None)
    buyer = next((a[7] for a in reversed(acts) if len(a) > 7 and a[7]), "")
    return View(kept, names, value, currency, person, acts[0][0], acts[-1][0], buyer)


def _act(e: Event) -> Act:
    lines = tuple((i.product, i.qty, i.unit_price, i.name) for i in e.items)
    if e.kind is Kind.CART_UPDATED or (e.kind is Kind.CHECKOUT_STARTED and lines):
        op = _SNAPSHOT
    elif e.kind is Kind.CART_ITEM_ADDED and lines:
        op = _ADD
    elif e.kind is Kind.CART_ITEM_REMOVED and lines:
        op = _REMOVE
    else:
        op = _TOUCH
    return (e.time, e.id, op, lines, e.amount, e.currency, e.customer or e.visitor, buyer_of(e))


class CartBook:
    """The carts of one organisation.

    `apply(event)` folds in a cart, checkout or order event; `advance(watermark_ms)` moves the
    watermark (max event time seen minus allowed lateness, from the caller) and takes the
    abandonment decisions it allows. Both return the records they changed, each with a new version.
    """

    def __init__(self, org: str, timezone: str, abandon_after_ms: int = 60 * MINUTE_MS,
                 keep_ms: int = DEFAULT_KEEP_MS, version: Version | None = None) -> None:
        if not 30 * MINUTE_MS <= abandon_after_ms <= 180 * MINUTE_MS:
            raise ValueError(f"abandon_after must be 30 to 180 minutes, got {abandon_after_ms / MINUTE_MS:g}")
        if keep_ms < abandon_after_ms:
            raise ValueError("keep must be at least abandon_after")
        self.org = org
        self.days = Days(timezone)
        self.abandon_after = abandon_after_ms
        self.keep = keep_ms
        self.version = version or Version()
        self.watermark: int | None = None
        self.late = TooLate()  # events ignored because they were older than watermark - keep
        self.carts: dict[tuple[str, str], Cart] = {}
        self.day_counts: dict[tuple[str, str, str], list[int]] = {}
        self.open_counts: dict[tuple[str, str], list[int]] = {}
        self.products: dict[tuple[str, str, str], int] = {}
        self._held: dict[tuple[str, str], int] = {}  # (store, day) -> carts held that count on it
        self._wake: list[tuple[int, str, str]] = []  # (time, store, cart): look at the cart when W > time
        self._swept = -(2**62)

    # --- input -----------------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Record[Value]]:
        """Folds one event in (other kinds, and events without `cart`, are ignored)."""
        if event.kind not in CART_KINDS or not event.cart:
            return []
        if self.watermark is not None and event.time < self.watermark - self.keep:
            self.late.refuse(event)
            return []
        key = (event.store, event.cart)
        c = self.carts.get(key)
        if c is None:
            c = self.carts[key] = Cart(event.store, event.cart)
        if event.id in c.ids:
            return []
        c.ids.add(event.id)
        c.latest = max(c.latest, event.time)
        if event.kind in ACTIVITY:
            act = _act(event)
            if not c.acts or act[:2] > c.acts[-1][:2]:
                c.acts.append(act)
            else:
                insort(c.acts, act, key=lambda a: a[:2])
            c.view = _contents(c.acts)
        elif event.kind in PURCHASE:
            c.paid = event.time if c.paid is None else min(c.paid, event.time)
        else:
            c.expiries.append(event.time)
        out: list[Record[Value]] = []
        self._refresh(c, out)
        self._schedule(c)
        return out

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward (never back) and emits the decisions and corrections it makes."""
        if self.watermark is not None and watermark_ms <= self.watermark:
            return []
        self.watermark = watermark_ms
        out: list[Record[Value]] = []
        while self._wake and self._wake[0][0] < watermark_ms:
            time_, store, cart = heapq.heappop(self._wake)
            c = self.carts.get((store, cart))
            if c is None:
                continue
            c.wake.discard(time_)
            self._refresh(c, out)
            if watermark_ms > self._forget_after(c):
                self._forget(c)
        self._drop_days()
        return out

    # --- reading ---------------------------------------------------------------------------------

    @property
    def too_late(self) -> int:
        return self.late.count

    def status(self, c: Cart) -> str | None:
        """The cart's status at the current watermark (None: no activity, so not a cart)."""
        due = c.due(self.abandon_after)
        if due is None or c.view is None:
            return None
        paid = self._paid(c, due)
        if paid is not None and paid <= due:
            return PURCHASED
        if not c.view.lines:
            return EMPTY
        if self.watermark is not None and self.watermark > due:
            return RECOVERED if paid is not None else ABANDONED
        return PURCHASED if paid is not None else OPEN

    def next_due(self) -> int | None:
        """The earliest watermark time at which `advance` may change something: it does once the
        watermark is past it (None: nothing waits). For waking up while no events arrive."""
        return self._wake[0][0] if self._wake else None

    def held(self) -> dict[str, int]:
        """How much state is held: for gauges and bound checks."""
        return {"carts": len(self.carts), "day_counters": len(self.day_counts),
                "product_counters": len(self.products), "wakeups": len(self._wake)}

    # --- internals -------------------------------------------------------------------------------

    def _paid(self, c: Cart, due: int | None) -> int | None:
        """When the cart was bought; a purchase more than `keep` after `due` is not this cart's."""
        if c.paid is None or due is None or c.paid > due + self.keep:
            return None
        return c.paid

    def _forget_after(self, c: Cart) -> int:
        # Past its decision and its latest event: every event it holds is too late by then, so a copy
        # of one (appended again after the log's dedupe window) cannot start a cart of its own.
        due = c.due(self.abandon_after)
        return (c.latest if due is None else max(due, c.latest)) + self.keep

    def _schedule(self, c: Cart) -> None:
        """Asks `advance` to look at the cart again when W passes its `due` and its forget time."""
        for time_ in (c.due(self.abandon_after), self._forget_after(c)):
            if time_ is not None and time_ not in c.wake:
                c.wake.add(time_)
                heapq.heappush(self._wake, (time_, c.store, c.cart))

    def _forget(self, c: Cart) -> None:
        del self.carts[(c.store, c.cart)]
        if c.contrib is not None:
            self._unhold(c.contrib[0])

    def _unhold(self, key: tuple[str, str, str]) -> None:
        held = (key[0], key[1])
        self._held[held] -= 1
        if not self._held[held]:
            del self._held[held]

    def _drop_days(self) -> None:
        assert self.watermark is not None
        final = self.watermark - self.keep
        if final // HOUR_MS <= self._swept // HOUR_MS:
            return  # sweep once per hour of watermark progress
        self._swept = final
        for counters in (self.day_counts, self.products):
            for key in [k for k in counters if (k[0], k[1]) not in self._held and self.days.end(k[1]) <= final]:
                del counters[key]

    def _refresh(self, c: Cart, out: list[Record[Value]]) -> None:
        """Recomputes a cart's status; appends its record and the counters it moved, if they changed."""
        status = self.status(c)
        v = c.view
        mine: list[Record[Value]] = []
        contrib = None
        if status is not None and v is not None:
            day = self.days.of(v.first)
            products = tuple(v.lines) if status in (ABANDONED, RECOVERED) else ()
            contrib = ((c.store, day, v.currency), status, v.value, products)
            due = c.due(self.abandon_after)
            shown = records.Cart(
                store=c.store, cart=c.cart, person=v.person, status=status, currency=v.currency, value=v.value,
                items=[(p, q, u) for p, (q, u) in v.lines.items()], first=v.first, last=v.last, due=due,
                paid=self._paid(c, due), names=v.names, buyer=v.buyer,
            )
            if shown != c.shown:
                c.shown = shown
                mine.append(Record(self.org, 0, RecordKind.CART, f"{c.store}:{c.cart}", day, shown))
        if contrib != c.contrib:
            self._move(c.contrib, contrib, mine)
            if c.contrib is not None:
                self._unhold(c.contrib[0])
            if contrib is not None:
                held = (contrib[0][0], contrib[0][1])
                self._held[held] = self._held.get(held, 0) + 1
            c.contrib = contrib
        out.extend(Record(r.org, self.version.next(), r.kind, r.key, r.day, r.value) for r in mine)

    def _move(self, old: tuple[Any, ...] | None, new: tuple[Any, ...] | None, out: list[Record[Value]]) -> None:
        """Takes a cart's old contribution out of the counters, puts its new one in, and appends the
        counters that changed."""
        days: dict[tuple[str, str, str], list[int]] = {}
        opens: dict[tuple[str, str], list[int]] = {}
        products: dict[tuple[str, str, str], int] = {}
        for contrib, sign in ((old, -1), (new, 1)):
            if contrib is None or contrib[1] == EMPTY:
                continue
            key, status, value, items = contrib
            d = days.setdefault(key, [0] * len(DAY_FIELDS))
            d[0] += sign
            d[1] += sign * value
            slot = {OPEN: 2, ABANDONED: 4, RECOVERED: 4, PURCHASED: 8}[status]
            d[slot] += sign
            d[slot + 1] += sign * value
            if status == RECOVERED:
                d[6] += sign
                d[7] += sign * value
            if status == OPEN:
                o = opens.setdefault((key[0], key[2]), [0, 0])
                o[0] += sign
                o[1] += sign * value
            for product in items:
                pkey = (key[0], key[1], product)
                products[pkey] = products.get(pkey, 0) + sign
        for key, delta in sorted(days.items()):
            if any(delta):
                counts = self.day_counts.setdefault(key, [0] * len(DAY_FIELDS))
                for i, x in enumerate(delta):
                    counts[i] += x
                store, day, currency = key
                out.append(Record(self.org, 0, RecordKind.CART_DAY, f"{store}|{day}|{currency}", day,
                                  CartDay(store, currency, *counts)))
        for (store, currency), delta in sorted(opens.items()):
            if any(delta):
                o = self.open_counts.setdefault((store, currency), [0, 0])
                o[0] += delta[0]
                o[1] += delta[1]
                out.append(Record(self.org, 0, RecordKind.OPEN_CARTS, f"{store}|{currency}", "",
                                  OpenCarts(store, currency, carts=o[0], value=o[1])))
        for (store, day, product), change in sorted(products.items()):
            if change:
                n = self.products[(store, day, product)] = self.products.get((store, day, product), 0) + change
                out.append(Record(self.org, 0, RecordKind.ABANDONED_PRODUCT, f"{store}|{day}|{product}", day,
                                  AbandonedProduct(store, product, carts=n)))
