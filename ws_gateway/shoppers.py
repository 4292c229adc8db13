"""Carts, journey and e-mail attribution figures over a period, from the dataflow's records. Pure.

Definitions: docs/carts_journey.md. Counters are per local day; a period sums its days.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from core.changes import Record
from core.money import EXPONENTS, Money
from core.rates import LATEST, Rates, convert
from core.records import AbandonedProduct, Attribution, Cart, CartDay, JourneyDay, OpenCarts
from ws_gateway.list_parts import cart_names_part, merge_cart_names

CART_COUNTS = ("carts", "open", "abandoned", "recovered", "purchased")


def _by_status(v: CartDay) -> tuple[tuple[int, int], ...]:
    """(carts, value) of each of CART_COUNTS, in that order."""
    return ((v.carts, v.value), (v.open, v.open_value), (v.abandoned, v.abandoned_value),
            (v.recovered, v.recovered_value), (v.purchased, v.purchased_value))


def carts_summary(days: Iterable[Record[CartDay]], open_now: Iterable[Record[OpenCarts]],
                  products: Iterable[Record[AbandonedProduct]], carts: Iterable[Record[Cart]],
                  *, currency: str, rates: Rates | None, limit: int, store: str | None,
                  best: Iterable[Record[Cart]] | None = None, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`carts`: the period's carts, or (the read side's day parts, ws_gateway/list_parts.py) the `limit`
    latest of them with `best` the `limit` best open ones, as this would pick them, and `names` the
    products' names in the period's carts (list_parts.cart_names_part: the latest cart naming each)."""
    counts = [0] * len(CART_COUNTS)
    values = [0] * len(CART_COUNTS)
    for r in days:
        v = r.value
        if store is not None and v.store != store:
            continue
        for i, (n, value) in enumerate(_by_status(v)):
            counts[i] += n
            values[i] += convert(rates, value, v.currency, currency, r.day)
    live_n = live_value = 0
    for o in open_now:
        if store is None or o.value.store == store:
            live_n += o.value.carts
            live_value += convert(rates, o.value.value, o.value.currency, currency, LATEST)  # open now
    abandoned_products: Counter[str] = Counter()
    by_store: Counter[tuple[str, str]] = Counter()  # (product, store): which store's carts hold it most
    for p in products:
        if store is None or p.value.store == store:
            abandoned_products[p.value.product] += p.value.carts
            by_store[(p.value.product, p.value.store)] += p.value.carts
    most: dict[str, tuple[int, str]] = {}
    for (product, s), n in by_store.items():
        if product not in most or (-n, s) < (-most[product][0], most[product][1]):
            most[product] = (n, s)
    carts = list(carts)
    if names is None:
        names = merge_cart_names([cart_names_part(carts)])
    mine = [r for r in carts if store is None or r.value.store == store]
    listed = [r.value for r in sorted(mine, key=lambda r: (r.value.last, r.key), reverse=True)[:limit]]
    # The best carts: the period's open carts by value (each at its first day's rate), largest first.
    if best is None:
        best = sorted((r for r in mine if r.value.status == "open"),
                      key=lambda r: (-convert(rates, r.value.value, r.value.currency, currency, r.day), r.key))[:limit]
    total = dict(zip(CART_COUNTS, counts))
    return {
        **total,
        **{f"{f}_value": Money(value, currency).to_json() for f, value in zip(CART_COUNTS, values)},
        "abandonment_rate": round(total["abandoned"] / total["carts"], 6) if total["carts"] else 0.0,
        "recovery_rate": round(total["recovered"] / total["abandoned"], 6) if total["abandoned"] else 0.0,
        "open_now": {"carts": live_n, "value": Money(live_value, currency).to_json()},
        "most_abandoned_products": [{"product": p, "name": names.get(p, ""), "store": most[p][1], "carts": n}
                                    for p, n in sorted(abandoned_products.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]],
        "latest_carts": [_cart_json(c) for c in listed],
        "best_carts": [_cart_json(r.value) for r in best],
    }


def _cart_json(c: Cart) -> dict[str, Any]:
    return {"store": c.store, "cart": c.cart, "person": c.person, "buyer": c.buyer, "name": "", "status": c.status, "currency": c.currency,
            "exponent": EXPONENTS[c.currency], "value": c.value, "first": c.first, "last": c.last, "due": c.due, "paid": c.paid}


def journey_summary(days: Iterable[Record[JourneyDay]], store: str | None) -> dict[str, Any]:
    visitors = added = purchased = again = 0
    for r in days:
        v = r.value
        if store is None or v.store == store:
            visitors, added = visitors + v.visitors, added + v.added_to_cart
            purchased, again = purchased + v.purchased, again + v.purchased_again
    return {"visitors": visitors, "added_to_cart": added, "purchased": purchased, "purchased_again": again,
            "conversion_rate": round(purchased / visitors, 6) if visitors else 0.0}


def attribution_summary(days: Iterable[Record[Attribution]], *, currency: str, rates: Rates | None,
                        store: str | None) -> dict[str, Any]:
    per: dict[str, list[int]] = {}
    for r in days:
        v = r.value
        if store is not None and v.store != store:
            continue
        acc = per.setdefault(v.campaign, [0, 0])
        acc[0] += v.orders
        acc[1] += convert(rates, v.revenue, v.currency, currency, r.day)
    ranked = sorted(per.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "orders": sum(a[0] for a in per.values()),
        "revenue": Money(sum(a[1] for a in per.values()), currency).to_json(),
        "campaigns": [{"campaign": c, "orders": a[0], "revenue": Money(a[1], currency).to_json()} for c, a in ranked],
    }
