"""The facts a segment preview reads, kept ready as columns (numpy arrays), one row per record.

ws_gateway/segment_preview.py rebuilds every customer's `CustomerFacts` from the `customer`, `order`
and `cart` records for each preview: ~30 µs a record, a minute at 1M customers. These columns hold the
same facts, taken from the same records once and then kept current record by record (the change
feed: ws_gateway/preview_index.py), so that a preview is a few vectorised passes over arrays
(ws_gateway/preview_eval.py). Pure: records in, arrays out; no I/O, no clock.

What a row keeps is what `customer_facts` takes from its record, and nothing else:

- a customer slot per customer key met in a profile, an order or a cart: the profile's `first_seen`,
  `registered`, `last_active`, its lifetime refunds in the organisation's currency and its stores (the
  first store and those of its money) as bits; `has_profile` tells the customers the preview counts
  (an order's customer without a profile counts only for a rule over orders alone, as there);
- an order row per `order` record: its customer's slot and paid time (slot -1: unpaid or no customer,
  which the preview leaves out), its amount converted to the organisation's currency at its day's rate
  (0 when there is no rate, as the dataflow counts it), its units (Σ line quantities), and one
  (order, product) pair per product id of its lines;
- a cart row per `cart` record: its person's slot (-1: none), status, first activity, last activity,
  `due`, its store's bit and, open, its value converted at its last activity's day (a cart whose
  currency has no rate is flagged: the slow path raises there, so the preview falls back to it).

A record replaces its row only when its version is newer than the row's (the feed and a full read
may both bring it). Rows are never dropped (records are not deleted): a record that stops counting (a
cart that comes to name nobody) keeps its row with slot -1. A customer's stores and refunds are its
profile's as last written; a customer slot without a profile (`has_profile` false) keeps the fills.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from core.changes import Record
from core.rates import MissingRate
from core.records import Cart, Customer, Order, Value
from core.rules import Context

NONE = np.iinfo(np.int64).min  # a missing instant (never a real one)
STATUS = {"open": 1, "abandoned": 2, "recovered": 3}  # cart statuses the facts read; any other: 0
STORE_BITS = 64  # stores an organisation may have for the preview's columns (beyond: the slow path)

# int64 and bool arrays; numpy's stubs type a comparison of arrays as Any, so the element type is not checked
I64 = npt.NDArray[Any]
Bools = npt.NDArray[Any]


class _Columns:
    """Growable named columns, arrays doubled when full; with `keyed`, a row per key."""

    def __init__(self, spec: dict[str, tuple[Any, int]], keyed: bool = True) -> None:
        self.spec = spec  # name -> (dtype, fill of a new row)
        self.n = 0
        self.rows: dict[str, int] | None = {} if keyed else None
        self.keys: list[str] = []
        self.cols: dict[str, npt.NDArray[Any]] = {name: np.full(1024, fill, dtype) for name, (dtype, fill) in spec.items()}

    def row(self, key: str) -> int:
        assert self.rows is not None
        found = self.rows.get(key)
        if found is None:
            found = self.rows[key] = self.append()
            self.keys.append(key)
        return found

    def newer(self, key: str, version: int) -> int | None:
        """The row of `key` (added when new), now at `version`; None when it holds that version or a
        newer one already (a replayed or older record changes nothing)."""
        i = self.row(key)
        if self.cols["version"][i] >= version:
            return None
        self.cols["version"][i] = version
        return i

    def append(self) -> int:
        if self.n == len(next(iter(self.cols.values()))):
            for name, (dtype, fill) in self.spec.items():
                grown = np.full(2 * self.n, fill, dtype)
                grown[:self.n] = self.cols[name]
                self.cols[name] = grown
        self.n += 1
        return self.n - 1

    def view(self, name: str) -> npt.NDArray[Any]:
        return self.cols[name][:self.n]

    def saved(self) -> tuple[int, list[str], dict[str, npt.NDArray[Any]]]:
        """Its rows, keys and columns cut to its rows (views: pickled, only the rows are written)."""
        return self.n, self.keys, {name: self.view(name) for name in self.spec}

    def restore(self, n: int, keys: list[str], cols: dict[str, npt.NDArray[Any]]) -> None:
        """Takes back what `saved` gave; ValueError when it does not fit this spec (a damaged file)."""
        if set(cols) != set(self.spec) or (self.rows is not None and len(keys) != n):
            raise ValueError("the saved columns do not match the columns' layout")
        for name, (dtype, _) in self.spec.items():
            if cols[name].dtype != np.dtype(dtype) or cols[name].shape != (n,):
                raise ValueError(f"the saved column {name} is not {n} rows of {np.dtype(dtype)}")
        if n:  # else the fresh arrays stay: `append` doubles a full array, and twice nothing is nothing
            self.cols = {name: np.ascontiguousarray(col) for name, col in cols.items()}
        self.n, self.keys = n, keys
        if self.rows is not None:
            self.rows = {k: i for i, k in enumerate(keys)}
            if len(self.rows) != n:
                raise ValueError("the saved keys are not unique")

    def take(self, kept: npt.NDArray[Any]) -> None:
        """Keeps the rows `kept` selects (indices or a mask), in that order (unkeyed columns only)."""
        assert self.rows is None
        for name in self.spec:
            self.cols[name] = np.ascontiguousarray(self.view(name)[kept])
        self.n = len(self.cols[next(iter(self.spec))])


class PreviewColumns:
    """One organisation's customers, orders and carts as columns (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx  # its currency and rates convert the amounts as the dataflow does
        self.ranked = 0  # customer slots below this are in key order (rerank): a preview's first members
        self.customers = _Columns({
            "version": (np.int64, -1), "has_profile": (np.bool_, False), "first_seen": (np.int64, 0),
            "registered": (np.int64, NONE), "last_active": (np.int64, NONE), "refunded": (np.int64, 0),
            "stores": (np.uint64, 0)})
        self.orders = _Columns({
            "version": (np.int64, -1), "slot": (np.int32, -1), "time": (np.int64, 0), "value": (np.int64, 0),
            "units": (np.int64, 0), "gen": (np.int32, 0), "products": (np.int32, 0)})
        self.carts = _Columns({
            "version": (np.int64, -1), "slot": (np.int32, -1), "status": (np.int8, 0), "first": (np.int64, 0),
            "last": (np.int64, 0), "due": (np.int64, NONE), "open_value": (np.int64, 0), "store": (np.int8, -1),
            "unconvertible": (np.bool_, False)})
        # (order row, product) pairs; a pair counts while its gen is its order row's: a rewritten order
        # appends its pairs anew under the next gen (compacted once the stale ones outnumber the live)
        self.pairs = _Columns({"order": (np.int32, 0), "product": (np.int32, 0), "gen": (np.int32, 0)}, keyed=False)
        self.live_pairs = 0
        self.products: dict[str, int] = {}
        self.stores: dict[str, int] = {}  # store -> bit
        self.too_many_stores = False
        self.generation = 0  # moves with every applied record: what was computed from the columns is stale

    @property
    def keys(self) -> list[str]:
        """Customer slot -> key."""
        return self.customers.keys

    # --- taking records ------------------------------------------------------------------------

    def apply(self, records: Iterable[Record[Value]]) -> int:
        """Takes the records (customer, order and cart; others are ignored) newer than their rows;
        returns how many it took."""
        took = 0
        for r in records:
            v = r.value
            if isinstance(v, Order):
                took += self._order(r.key, r.version, v)
            elif isinstance(v, Customer):
                took += self._customer(r.version, v)
            elif isinstance(v, Cart):
                took += self._cart(r.key, r.version, v)
        if took:
            self.generation += 1
            if self.pairs.n > 2 * self.live_pairs + 100_000:
                self._compact_pairs()
        return took

    def _bit(self, store: str) -> int:
        bit = self.stores.get(store)
        if bit is None:
            if len(self.stores) >= STORE_BITS:
                self.too_many_stores = True
                return 0
            bit = self.stores[store] = len(self.stores)
        return bit

    def _customer(self, version: int, p: Customer) -> int:
        c = self.customers
        i = c.newer(p.customer, version)
        if i is None:
            return 0
        stores = 1 << self._bit(p.store)
        for m in p.money:
            stores |= 1 << self._bit(m.store)
        refunded = sum([m.refunds for m in p.money if m.currency == self.ctx.currency])
        for name, value in (("has_profile", True), ("first_seen", p.first_seen),
                            ("registered", NONE if p.registered is None else p.registered),
                            ("last_active", NONE if p.last_active is None else p.last_active),
                            ("refunded", refunded), ("stores", stores)):
            c.cols[name][i] = value
        return 1

    def _order(self, key: str, version: int, o: Order) -> int:
        t = self.orders
        found = t.newer(key, version)
        if found is None:
            return 0
        i, cols = found, t.cols
        self.live_pairs -= int(cols["products"][i])
        gen = int(cols["gen"][i]) + 1  # the pairs of the row's earlier record no longer count
        cols["gen"][i], cols["products"][i] = gen, 0
        if o.customer is None or o.paid is None:
            cols["slot"][i] = -1
            return 1
        lines = o.lines()
        cols["slot"][i] = self.customers.row(o.customer)
        cols["time"][i] = o.paid
        cols["value"][i] = self._value(o.amount, o.currency, o.paid)
        cols["units"][i] = sum(q for _, q, _, _ in lines)
        products = {p for p, _, _, _ in lines if p}
        for product in products:
            j = self.pairs.append()
            pc = self.pairs.cols
            pc["order"][j], pc["product"][j], pc["gen"][j] = i, self.products.setdefault(product, len(self.products)), gen
        cols["products"][i] = len(products)
        self.live_pairs += len(products)
        return 1

    def _compact_pairs(self) -> None:
        pc = self.pairs
        pc.take(pc.view("gen") == self.orders.view("gen")[pc.view("order")])

    def _value(self, amount: int, currency: str, at: int) -> int:
        if currency == self.ctx.currency:
            return amount
        try:
            return self.ctx.value(amount, currency, at)
        except MissingRate:
            return 0  # flows/membership.py counts an amount it cannot convert as 0

    def _cart(self, key: str, version: int, c: Cart) -> int:
        t = self.carts
        found = t.newer(key, version)
        if found is None:
            return 0
        i, cols = found, t.cols
        if c.person is None:
            cols["slot"][i] = -1
            return 1
        status = STATUS.get(c.status, 0)
        cols["slot"][i] = self.customers.row(c.person)
        cols["status"][i] = status
        cols["first"][i] = c.first
        cols["last"][i] = c.last
        cols["due"][i] = NONE if c.due is None else c.due
        cols["store"][i] = self._bit(c.store)
        cols["open_value"][i], cols["unconvertible"][i] = 0, False
        if status == STATUS["open"]:
            try:
                cols["open_value"][i] = c.value if c.currency == self.ctx.currency else self.ctx.value(c.value, c.currency, c.last)
            except MissingRate:
                cols["unconvertible"][i] = True
        return 1

    # --- kept across restarts (ws_gateway/preview_keep.py) -------------------------------------

    def stale(self, kind: type[Value], versions: dict[str, int]) -> list[str]:
        """The keys of `versions` (record key -> the read model's version) whose row holds an older
        version or none: the records to take. A customer's row is its profile's `customer`, which the
        dataflow makes its record's key (were it another, every key would look stale: read, not missed)."""
        table = self.customers if kind is Customer else self.orders if kind is Order else self.carts
        assert table.rows is not None
        rows, have = table.rows, table.view("version")
        return [k for k, v in versions.items() if (i := rows.get(k)) is None or have[i] < v]

    def saved(self) -> dict[str, Any]:
        """Everything but `ctx` (the zone, currency and rates the amounts were converted with: the saved
        file's mark names them), for `restore`: plain values and numpy arrays, to pickle."""
        return {"customers": self.customers.saved(), "orders": self.orders.saved(), "carts": self.carts.saved(),
                "pairs": self.pairs.saved(), "live_pairs": self.live_pairs, "products": self.products,
                "stores": self.stores, "too_many_stores": self.too_many_stores, "ranked": self.ranked}

    @classmethod
    def restore(cls, ctx: Context, saved: dict[str, Any]) -> PreviewColumns:
        """Columns equal to those `saved` was taken from, converting later records with `ctx` (which must
        be theirs); ValueError (or KeyError, TypeError) for what `saved` did not give."""
        cols = cls(ctx)
        for name in ("customers", "orders", "carts", "pairs"):
            getattr(cols, name).restore(*saved[name])
        cols.live_pairs, cols.ranked = int(saved["live_pairs"]), int(saved["ranked"])
        cols.products, cols.stores = dict(saved["products"]), dict(saved["stores"])
        cols.too_many_stores = bool(saved["too_many_stores"])
        if not 0 <= cols.ranked <= cols.customers.n:
            raise ValueError("the saved ranking is beyond the saved customers")
        return cols

    # --- order by key ----------------------------------------------------------------------------

    def rerank(self) -> None:
        """Puts the customer slots in key order (moving every column and every reference to a slot), so
        that a preview's first members by key are its first member slots. New customers are appended
        after the ranked ones; rerank again once they are many (ws_gateway/preview_index.py)."""
        c = self.customers
        order = sorted(range(c.n), key=c.keys.__getitem__)
        perm = np.array(order, dtype=np.int64)
        new_of = np.empty(c.n + 1, np.int64)  # old slot -> new slot; index -1 (slot -1) stays -1
        new_of[perm] = np.arange(c.n, dtype=np.int64)
        new_of[c.n] = -1
        for name in c.spec:
            c.cols[name][:c.n] = c.view(name)[perm]
        c.keys[:] = [c.keys[i] for i in order]
        assert c.rows is not None
        c.rows.clear()
        c.rows.update((k, i) for i, k in enumerate(c.keys))
        for t in (self.orders, self.carts):
            t.cols["slot"][:t.n] = new_of[t.view("slot")]
        self.ranked = c.n
        self.generation += 1
