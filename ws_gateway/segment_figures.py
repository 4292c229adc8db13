"""`segment=ID` on /figures and /carts: the figures of a segment's current members, recomputed from the
stored order and cart records (docs/segments.md, "Figures and carts of a segment"). Pure: records in,
figures out.

The dataflow keeps the revenue buckets and the cart days per store and day, not per customer, so a
segment's figures are summed here from the `order` and `cart` records of its members. To give them
exactly the definitions of the unfiltered figures, the members' records are folded into the same
shapes the dataflow writes (day buckets, `cart_day`, `open_carts`, `abandoned_product`) and handed to
the same summing code (`core.figures.compute_figures`, `ws_gateway.shoppers.carts_summary`): a
segment that holds every customer gives the unfiltered numbers but for guests' orders and visitors'
carts, conversion and rounding included.

What cannot be restricted is said, never silently the unfiltered number: the buckets count a
refund on the day it was reported, and an order record keeps only its refunded total, so `refunds` and
`net_revenue` of a period are null with a reason; `paid_orders_refunded` (the refunds so far on the
members' paid orders of the period) stands beside them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from core.changes import DAY, Bucket, Record
from core.clock import local_day
from core.figures import Gap, compute_figures, gaps_json
from core.money import Money
from core.rates import Rates, RecordingRates, convert
from core.records import AbandonedProduct, Cart, CartDay, OpenCarts, Order, RecordKind

NOT_PER_CUSTOMER = {
    "refunds": "refunds are counted on the day they are reported and kept per day and store, not per "
               "customer: a segment's refunds of a period cannot be told apart; see paid_orders_refunded",
    "net_revenue": "gross_revenue minus refunds, and the refunds of a period cannot be restricted to a segment; "
                   "see paid_orders_refunded",
}


def member_buckets(orders: Iterable[Record[Order]], members: frozenset[str], tz: ZoneInfo,
                   store: str | None, until_ms: int | None = None) -> list[Bucket]:
    """The members' orders as day buckets, as the dataflow's revenue ledger counts them: a paid order's
    amount, count and units on its paid day (store, currency); an order, paid or not, in `orders` on the
    local day it was placed. `refunds` stay 0 (see the module docstring). `orders` must hold every order
    record whose day can be in the period (a record's day is its paid day, else its placed day). With
    `until_ms`, only what happened before that instant (a day so far: /figures?until=)."""
    end = until_ms if until_ms is not None else 1 << 62
    sums: dict[tuple[str, str, str], list[int]] = {}
    for r in orders:
        o = r.value
        if o.customer is None or o.customer not in members or (store is not None and o.store != store):
            continue
        if o.placed is not None and o.placed < end:
            sums.setdefault((local_day(o.placed, tz).isoformat(), o.store, o.currency), [0, 0, 0, 0])[1] += 1
        if o.paid is not None and o.paid < end:
            acc = sums.setdefault((local_day(o.paid, tz).isoformat(), o.store, o.currency), [0, 0, 0, 0])
            acc[0] += o.amount
            acc[2] += 1
            acc[3] += sum(line[1] for line in o.lines())
    return [Bucket("", 0, DAY, day, s, currency, gross, 0, placed, paid, items)
            for (day, s, currency), (gross, placed, paid, items) in sorted(sums.items())]


def paid_orders_refunded(orders: Iterable[Record[Order]], members: frozenset[str], first: str, last: str,
                         tz: ZoneInfo, currency: str, rates: RecordingRates, store: str | None,
                         until_ms: int | None = None) -> int:
    """Σ refunded so far (whatever day) on the members' orders paid in [first, last]: per (paid day,
    store, currency) summed, then converted once at that day's rate, as the figures convert (a missing
    rate leaves that sum out and is recorded in `rates.gaps`)."""
    sums: dict[tuple[str, str, str], int] = {}
    for r in orders:
        o = r.value
        if (o.customer is None or o.customer not in members or o.paid is None or not o.refunded
                or (store is not None and o.store != store) or (until_ms is not None and o.paid >= until_ms)):
            continue
        day = local_day(o.paid, tz).isoformat()
        if first <= day <= last:
            sums[(day, o.store, o.currency)] = sums.get((day, o.store, o.currency), 0) + o.refunded
    return sum(convert(rates, amount, cur, currency, day) for (day, _, cur), amount in sums.items())


def restricted_figures(figures: dict[str, object], refunded: int, gaps: Iterable[Gap], currency: str) -> dict[str, object]:
    """The JSON of a segment's figures: refunds and net revenue null, with why, and what stands beside them."""
    missing = set(gaps)
    out = {**figures, "refunds": None, "net_revenue": None, "not_restricted": dict(NOT_PER_CUSTOMER)}
    out["paid_orders_refunded"] = {**Money(refunded, currency).to_json(), **(gaps_json(missing, currency) if missing else {})}
    return out


@dataclass(frozen=True, slots=True)
class MemberCarts:
    """The members' carts in the shapes `shoppers.carts_summary` sums."""

    days: list[Record[CartDay]]
    open_now: list[Record[OpenCarts]]
    products: list[Record[AbandonedProduct]]
    listed: list[Record[Cart]]


def member_carts(carts: Iterable[Record[Cart]], members: frozenset[str], first: str, last: str,
                 store: str | None) -> MemberCarts:
    """The carts whose person (the customer of its latest activity naming one, else its visitor) is a
    member now, as the carts book counts them (docs/carts_journey.md): per store, day of first activity
    and currency, by status (empty carts nowhere); open now (any day); and per store, day and product,
    the abandoned or recovered carts with a line of it. `carts` must hold the open ones of every day."""
    days: dict[tuple[str, str, str], list[int]] = {}
    open_now: dict[tuple[str, str], list[int]] = {}
    products: Counter[tuple[str, str, str]] = Counter()
    listed: list[Record[Cart]] = []
    statuses = ("open", "abandoned", "recovered", "purchased")
    for r in carts:
        c = r.value
        if c.person is None or c.person not in members or (store is not None and c.store != store):
            continue
        if c.status == "open":
            acc = open_now.setdefault((c.store, c.currency), [0, 0])
            acc[0], acc[1] = acc[0] + 1, acc[1] + c.value
        if not first <= r.day <= last:
            continue
        listed.append(r)
        if c.status not in statuses:
            continue  # empty: not a cart with items
        # carts, value, then (count, value) of open, abandoned (or recovered), recovered, purchased
        d = days.setdefault((c.store, r.day, c.currency), [0] * 10)
        d[0], d[1] = d[0] + 1, d[1] + c.value
        for i, counted in enumerate((c.status == "open", c.status in ("abandoned", "recovered"),
                                     c.status == "recovered", c.status == "purchased")):
            if counted:
                d[2 + 2 * i] += 1
                d[3 + 2 * i] += c.value
        if c.status in ("abandoned", "recovered"):
            for product in {line[0] for line in c.items}:
                products[(c.store, r.day, product)] += 1
    return MemberCarts(
        days=[Record("", 0, RecordKind.CART_DAY, f"{s}|{day}|{cur}", day,
                     CartDay(s, cur, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9]))
              for (s, day, cur), d in sorted(days.items())],
        open_now=[Record("", 0, RecordKind.OPEN_CARTS, f"{s}|{cur}", "", OpenCarts(s, cur, n, value))
                  for (s, cur), (n, value) in sorted(open_now.items())],
        products=[Record("", 0, RecordKind.ABANDONED_PRODUCT, f"{s}|{day}|{p}", day, AbandonedProduct(s, p, n))
                  for (s, day, p), n in sorted(products.items())],
        listed=listed,
    )


def figures_json(orders: Iterable[Record[Order]], members: frozenset[str], *, first: str, last: str, tz: ZoneInfo,
                 currency: str, rates: Rates | None, store: str | None, until_ms: int | None = None) -> dict[str, object]:
    """What /figures answers for a segment: the members' orders summed as the unfiltered figures are
    (with `until_ms`, those paid or placed before it)."""
    orders = list(orders)
    result = compute_figures(member_buckets(orders, members, tz, store, until_ms), first=first, last=last,
                             currency=currency, rates=rates, store=store)
    recording = RecordingRates(rates)
    refunded = paid_orders_refunded(orders, members, first, last, tz, currency, recording, store, until_ms)
    return restricted_figures(result.to_json(), refunded, recording.gaps, currency)
