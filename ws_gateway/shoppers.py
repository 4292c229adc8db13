"""Carts, journey and e-mail attribution figures over a period, from the dataflow's records. Pure.

Definitions: docs/carts_journey.md. Counters are per local day; a period sums its days.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from core.figures import Record
from core.money import Money
from core.rates import LATEST, Rates, convert

CART_COUNTS = ("carts", "open", "abandoned", "recovered", "purchased")


def carts_summary(days: Iterable[Record], open_now: Iterable[Record], products: Iterable[Record], carts: Iterable[Record],
                  *, currency: str, rates: Rates | None, limit: int, store: str | None) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    values: Counter[str] = Counter()
    for r in days:
        v = r.value
        if store is not None and v["store"] != store:
            continue
        for f in CART_COUNTS:
            counts[f] += v[f]
            values[f] += convert(rates, v[f"{f}_value" if f != "carts" else "value"], v["currency"], currency, r.day)
    live_n = live_value = 0
    for r in open_now:
        if store is None or r.value["store"] == store:
            live_n += r.value["carts"]
            live_value += convert(rates, r.value["value"], r.value["currency"], currency, LATEST)  # open now
    abandoned_products: Counter[str] = Counter()
    for r in products:
        if store is None or r.value["store"] == store:
            abandoned_products[r.value["product"]] += r.value["carts"]
    listed = sorted((r for r in carts if store is None or r.value["store"] == store),
                    key=lambda r: (r.value["last"], r.key), reverse=True)[:limit]
    return {
        **{f: counts[f] for f in CART_COUNTS},
        **{f"{f}_value": Money(values[f], currency).to_json() for f in CART_COUNTS},
        "abandonment_rate": round(counts["abandoned"] / counts["carts"], 6) if counts["carts"] else 0.0,
        "recovery_rate": round(counts["recovered"] / counts["abandoned"], 6) if counts["abandoned"] else 0.0,
        "open_now": {"carts": live_n, "value": Money(live_value, currency).to_json()},
        "most_abandoned_products": [{"product": p, "carts": n}
                                    for p, n in sorted(abandoned_products.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]],
        "latest_carts": [{k: r.value[k] for k in ("store", "cart", "person", "status", "currency", "value", "first",
                                                  "last", "due", "paid")} for r in listed],
    }


def journey_summary(days: Iterable[Record], store: str | None) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    for r in days:
        if store is None or r.value["store"] == store:
            for f in ("visitors", "added_to_cart", "purchased", "purchased_again"):
                totals[f] += r.value[f]
    visitors = totals["visitors"]
    return {**{f: totals[f] for f in ("visitors", "added_to_cart", "purchased", "purchased_again")},
            "conversion_rate": round(totals["purchased"] / visitors, 6) if visitors else 0.0}


def attribution_summary(days: Iterable[Record], *, currency: str, rates: Rates | None, store: str | None) -> dict[str, Any]:
    per: dict[str, list[int]] = {}
    for r in days:
        v = r.value
        if store is not None and v["store"] != store:
            continue
        acc = per.setdefault(v["campaign"], [0, 0])
        acc[0] += v["orders"]
        acc[1] += convert(rates, v["revenue"], v["currency"], currency, r.day)
    ranked = sorted(per.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return {
        "orders": sum(a[0] for a in per.values()),
        "revenue": Money(sum(a[1] for a in per.values()), currency).to_json(),
        "campaigns": [{"campaign": c, "orders": a[0], "revenue": Money(a[1], currency).to_json()} for c, a in ranked],
    }
