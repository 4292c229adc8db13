"""The preview of any rule the stored records can answer, windows included (docs/segments.md,
"Preview"): the customers' facts rebuilt from the `customer`, `order` and `cart` records, and the
rule evaluated by the dataflow's own code (`core.rules.holds`) at the segment clock's `as_of`. Pure.

The facts are built as flows/membership.py builds them from the events, so the preview counts what
the dataflow would hold for that rule:
- an order entry per paid `order` record of the customer: paid time, currency, amount, units (Σ item
  quantities) and the product ids of its lines. As in the dataflow, an amount in another currency than
  the organisation's is converted at its day's rate, and counts as 0 when there is no rate for it;
- `first_seen`, `registered`, `last_active` from the profile; `stores` from the profile (the store it was
  first seen at and those of its orders) and its carts;
- lifetime refunds from the profile, in the organisation's currency (others count 0), as one folded
  total: what `net_spent` without a window reads;
- the carts from the `cart` records naming the customer: open ones, the latest first activity, the
  latest `due` of one counted abandoned.

This is the records' path: the gateway answers from the preview columns (ws_gateway/preview_columns.py,
kept from the change feed: ws_gateway/preview_index.py) once they are built, and they are held equal
to `preview_records` here (tests/test_segment_preview_columns.py).

What the records do not keep cannot be previewed, and says so (PreviewError, a 400): the time and
number of each refund (`refunds`, `net_spent` with a window), an order's categories and brands
(`bought_category`, `bought_brand`), e-mail engagement and custom attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.changes import Record
from core.rates import MissingRate
from core.records import Cart, Customer, Order
from core.rules import Context, CustomerFacts, Entry, Period, Totals, holds, inputs
from core.rules.facts import NO_TOTALS
from core.rules.graph import conditions, references
from core.rules.tree import EVER, Measure, Rule, Tally

# the read model's records(org, kind): what preview_records reads
Fetch = Callable[[type[Any]], Sequence[Record[Any]]]

PREVIEW_MEMBERS = 20
# The facts (CustomerFacts fields) the records rebuild, whole or in part (refunds: lifetime amount only)
REBUILT = frozenset({"first_seen", "registered", "last_active", "stores", "orders", "refunds", "open_carts",
                     "last_cart_created", "last_cart_abandoned"})
# the facts the cart records give (a cart's store is one of the customer's stores)
CART_READS = frozenset({"open_carts", "last_cart_created", "last_cart_abandoned", "stores"})
NOT_KEPT = {
    "attributes": "custom attributes (attribute)",
    "emails": "e-mail engagement (email_engaged)",
}


class PreviewError(ValueError):
    """A rule the stored records cannot answer: its message says what and what to do, for a 400."""


def previewable(rule: Rule, segments: Mapping[str, Rule]) -> None:
    """Raises PreviewError when the rule, or a segment it names through in_segment, reads what the
    records do not keep."""
    missing = [NOT_KEPT[name] for name in sorted(inputs(rule, segments) - REBUILT)]
    pending, seen = [rule], set[str]()
    while pending:
        for c in conditions(pending.pop()):
            if isinstance(c, Tally):
                if any(t.stream == "refunds" and (t.measure is not Measure.AMOUNT or c.sum.window != EVER)
                       for t in c.sum.terms):
                    missing.append(f"each refund's time and number ({c.criterion}"
                                   f"{' in a window' if c.sum.window != EVER else ''})")
                if c.sum.item is not None and c.sum.item.field != "products":
                    missing.append(f"an order's {c.sum.item.field} ({c.criterion})")
            for ref in references(c) - seen:
                seen.add(ref)
                if ref in segments:
                    pending.append(segments[ref])
    if missing:
        raise PreviewError(
            f"preview rebuilds each customer's facts from the stored orders, carts and profiles, which do not "
            f"keep {'; '.join(dict.fromkeys(missing))}: save the rule (PUT) and read its members")


@dataclass(slots=True)
class _Carts:
    open: list[Entry]
    created: int | None = None
    abandoned: int | None = None


def reads_lines(rule: Rule, segments: Mapping[str, Rule]) -> bool:
    """Whether the rule (or a segment it names) reads an order's lines: its units or its products."""
    pending, seen = [rule], set[str]()
    while pending:
        for c in conditions(pending.pop()):
            if isinstance(c, Tally) and any(t.stream == "orders" for t in c.sum.terms) and (
                    c.sum.item is not None or any(t.measure is Measure.UNITS for t in c.sum.terms)):
                return True
            for ref in references(c) - seen:
                seen.add(ref)
                if ref in segments:
                    pending.append(segments[ref])
    return False


def buyers_only(rule: Rule, reads: frozenset[str], now: int, ctx: Context) -> bool:
    """Whether only customers with a paid order can be members: the rule reads nothing but the orders
    and does not hold without any. Then the customer records need not be read (a third of the work)."""
    return reads <= {"orders"} and not holds(rule, CustomerFacts(first_seen=0), now, ctx)


def customer_facts(profiles: Iterable[Record[Customer]] | None, orders: Iterable[Record[Order]],
                   carts: Iterable[Record[Cart]], currency: str, *, lines: bool = True,
                   stores: bool = True, ctx: Context | None = None) -> dict[str, CustomerFacts]:
    """Every customer's facts as the dataflow builds them, from the records (see the module docstring).
    Without `lines`, order entries leave out units and products; without `stores`, the stores: a rule
    that reads neither answers the same, sooner (they are most of the work). Without `profiles`
    (`buyers_only`), the facts of the orders' customers, their orders alone."""
    entries: dict[str, list[Entry]] = {}
    for ro in orders:
        o = ro.value
        if o.customer is None or o.paid is None:
            continue
        same = o.currency == currency or _convertible(ctx, o.amount, o.currency, o.paid)
        if lines:
            items = o.lines()
            entry = Entry(o.paid, o.currency if same else currency, o.amount if same else 0,
                          sum(q for _, q, _, _ in items), tuple(sorted({p for p, _, _, _ in items if p})))
        else:
            entry = Entry(o.paid, o.currency if same else currency, o.amount if same else 0)
        found = entries.get(o.customer)
        if found is None:
            entries[o.customer] = [entry]
        else:
            found.append(entry)
    held: dict[str, _Carts] = {}
    cart_stores: dict[str, set[str]] = {}
    for rc in carts:
        c = rc.value
        if c.person is None:
            continue
        k = held.setdefault(c.person, _Carts([]))
        cart_stores.setdefault(c.person, set()).add(c.store)
        k.created = c.first if k.created is None else max(k.created, c.first)
        if c.status == "open":
            k.open.append(Entry(c.last, c.currency, c.value))
        elif c.status in ("abandoned", "recovered") and c.due is not None:
            k.abandoned = c.due if k.abandoned is None else max(k.abandoned, c.due)
    out: dict[str, CustomerFacts] = {}
    by_time = _by_time
    if profiles is None:
        return {key: CustomerFacts(0, orders=tuple(sorted(found, key=by_time)) if len(found) > 1 else tuple(found))
                for key, found in entries.items()}
    for rp in profiles:
        p = rp.value
        key, mine, mine_orders = p.customer, held.get(p.customer), entries.get(p.customer)
        refunded = sum([m.refunds for m in p.money if m.currency == currency]) if p.money else 0
        where = tuple(sorted({p.store, *(m.store for m in p.money), *cart_stores.get(key, ())})) if stores else ()
        out[key] = CustomerFacts(
            p.first_seen, p.registered, p.last_active, where, (),
            (tuple(sorted(mine_orders, key=by_time)) if len(mine_orders) > 1 else tuple(mine_orders)) if mine_orders else (),
            (), (), tuple(sorted(mine.open, key=lambda e: (e.time, e.amount))) if mine else (),
            mine.created if mine else None, mine.abandoned if mine else None,
            (Period(None, None, (NO_TOTALS, Totals(0, 0, refunded), NO_TOTALS)),) if refunded else ())
    return out


def _convertible(ctx: Context | None, amount: int, source: str, at: int) -> bool:
    """Whether the rates convert it (flows/membership.py counts an amount it cannot convert as 0)."""
    if ctx is None:
        return False
    try:
        ctx.value(amount, source, at)
    except MissingRate:
        return False
    return True


def _by_time(e: Entry) -> int:
    return e.time


def preview(rule: Rule, facts: Mapping[str, CustomerFacts], now: int, ctx: Context) -> tuple[int, list[str]]:
    """How many customers the rule holds for at `now`, and the first PREVIEW_MEMBERS of them by key."""
    count, first = 0, list[str]()
    for key in sorted(facts):
        if holds(rule, facts[key], now, ctx):
            count += 1
            if len(first) < PREVIEW_MEMBERS:
                first.append(key)
    return count, first


def preview_records(rule: Rule, fetch: Fetch, now: int, ctx: Context) -> tuple[int, list[str]]:
    """`preview` as the route runs it from the stored records (`fetch(kind)`), reading each kind only
    when the rule (or a segment of `ctx.segments` it names) reads what it gives: the slow path, and
    the reference the preview columns (ws_gateway/preview_eval.py) are tested against."""
    segments = ctx.segments
    reads = inputs(rule, segments)
    profiles = None if buyers_only(rule, reads, now, ctx) else fetch(Customer)
    orders = fetch(Order) if "orders" in reads else ()
    carts = fetch(Cart) if reads & CART_READS else ()
    facts = customer_facts(profiles, orders, carts, ctx.currency, lines=reads_lines(rule, segments),
                           stores="stores" in reads, ctx=ctx)
    return preview(rule, facts, now, ctx)
