"""Segment evaluation: cost per event and state per customer, side by side with a naive baseline.

100 segments (the predefined library with its default thresholds, and generated ones mixing every
criterion, window and combinator) over N synthetic customers whose history spans two years. Then a
stream of events, each to a random customer, in the mix a shop sends (page views, carts, e-mail,
orders, refunds, profile updates). Per event, the way the dataflow will run it: the event changes the
customer's facts; `changed_inputs` names what changed; `SegmentSet.touched` picks the segments that
read it; `SegmentSet.evaluate` gives each one's membership and next change. The baseline evaluates
every segment with `holds` and then `next_change`, as a plain loop would.

State: every customer's facts folded under the segments' `Keep` (what the dataflow would hold),
measured as live objects with tracemalloc (strings the customers share, such as currency codes, counted
once, as in the dataflow) and pickled one by one (what a customer costs held as bytes, as
flows/profiles.py holds its profiles). Times are CPU time of this process (the box is shared).

    .venv/bin/python bench/rules.py [--customers 100000] [--events 200000]
"""

from __future__ import annotations

import argparse
import gc
import pickle
import random
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.rates import parse_ecb_csv  # noqa: E402
from core.rules import (  # noqa: E402
    Context,
    CustomerFacts,
    Entry,
    SegmentSet,
    attributes_of,
    changed_inputs,
    fold,
    holds,
    library,
    next_change,
    parse_segments,
)
from core.rules.criteria import Subject  # noqa: E402

DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000
START = 1_704_067_200_000  # 2024-01-01 UTC
NOW = START + 730 * DAY
ZONE, CURRENCY = "Europe/Berlin", "EUR"
PRODUCTS = [f"sku-{i}" for i in range(500)]
CATEGORIES = ["shoes", "shirts", "hats", "bags", "socks", "coats"]
BRANDS = ["acme", "globex", "initech", "umbrella"]
STORES = ["shop-de", "shop-fr", "shop-uk"]


def rates_csv() -> str:
    lines = ["Date,USD,GBP,"]
    for i in range(800):
        day = time.strftime("%Y-%m-%d", time.gmtime((START - 20 * DAY + i * DAY) / 1000))
        lines.append(f"{day},{1.05 + (i % 13) / 100:.4f},{0.85 + (i % 7) / 100:.4f}")
    return "\n".join(lines)


def generated_segments(rng: random.Random, n: int) -> dict[str, Any]:  # noqa: C901 - one branch per criterion, read top to bottom
    """`n` more segments: each criterion with windows and thresholds, in all/any/not."""
    def window() -> dict[str, Any]:
        return {"within": rng.choice(["24h", "7d", "30d", "90d", "180d"])} if rng.random() < 0.7 else {}

    def condition() -> dict[str, Any]:
        kind = rng.randrange(12)
        if kind == 0:
            return {"orders": {"gte": rng.randint(1, 6), **window()}}
        if kind == 1:
            return {"spent": {"gte": f"{rng.randint(5, 300) * 10}", **window()}}
        if kind == 2:
            return {"net_spent": {"lt": f"{rng.randint(1, 100) * 10}", **window()}}
        if kind == 3:
            return {"order_value": {"gte": f"{rng.randint(5, 80) * 10}", **window()}}
        if kind == 4:
            return {"items": {"gte": rng.randint(2, 30), **window()}}
        if kind == 5:
            which = rng.choice([("bought_product", "product", PRODUCTS[:20]), ("bought_category", "category", CATEGORIES),
                                ("bought_brand", "brand", BRANDS)])
            return {which[0]: {which[1]: rng.choice(which[2]), "gte": rng.randint(1, 3), **window()}}
        if kind == 6:
            return {"email_engaged": {"gte": rng.randint(1, 5), **window()}}
        if kind == 7:
            return {"open_cart_value": {"gte": f"{rng.randint(1, 30) * 10}"}}
        if kind == 8:
            return {rng.choice(["last_order_at", "last_active_at", "registered_at", "last_cart_created_at",
                                "last_abandoned_cart_at", "first_order_at"]):
                    {rng.choice(["before", "after"]): rng.choice(["1d", "7d", "30d", "90d", "180d"])}}
        if kind == 9:
            return {"attribute": {"name": "age", "between": sorted([rng.randint(18, 70), rng.randint(18, 70)])}}
        if kind == 10:
            return {"store": {"eq": rng.choice(STORES)}}
        return {"refunds": {"gte": 1, **window()}}

    segments: dict[str, Any] = {}
    for i in range(n):
        parts = [condition() for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            parts[0] = {"not": parts[0]}
        segments[f"generated_{i:02d}"] = parts[0] if len(parts) == 1 else {rng.choice(["all", "any"]): parts}
    return segments


def customer(rng: random.Random, i: int) -> CustomerFacts:
    """A customer whose history spans up to two years before NOW."""
    first = START + rng.randrange(700 * DAY)
    stores = tuple(sorted(rng.sample(STORES, 1 if rng.random() < 0.9 else 2)))
    orders, refunds = [], []
    if rng.random() < 0.6:
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6, 10])):
            t = first + rng.randrange(NOW - first)
            currency = "EUR" if rng.random() < 0.85 else "USD"
            products = tuple(rng.sample(PRODUCTS, rng.randint(1, 3)))
            orders.append(Entry(t, currency, rng.randint(900, 40_000), rng.randint(1, 5), products,
                                tuple({CATEGORIES[hash(p) % 6] for p in products}), (rng.choice(BRANDS),)))
            if rng.random() < 0.08:
                refunds.append(Entry(t + 3 * DAY, currency, rng.randint(500, 5_000)))
    gap = rng.choice([0, 0, 0, 7, 14, 30]) * DAY  # a subscriber opens or clicks every week, fortnight or month
    emails = tuple(range(first + rng.randrange(gap), NOW, gap)) if gap else ()
    last_active = max([first, *(o.time for o in orders), *emails])
    attributes = attributes_of({"age": rng.randint(18, 80), "tier": rng.choice(["gold", "silver", "bronze"])}
                               if rng.random() < 0.5 else {})
    return CustomerFacts(first_seen=first, registered=first, last_active=last_active, stores=stores, attributes=attributes,
                         orders=tuple(orders), refunds=tuple(refunds), emails=emails)


# Event mixes: (share, kind). REES46's October 2019 head (../shared/data): 97.8 % views, 0.95 % carts,
# 1.2 % purchase rows (counted here as orders: more than the real orders). The busy mix is a shop
# that converts, e-mails and refunds far more than real traffic does: most events touch many segments.
REAL_MIX = ((0.978, "view"), (0.0095, "cart"), (0.0125, "order"))
BUSY_MIX = ((0.55, "view"), (0.15, "cart"), (0.10, "email"), (0.10, "order"), (0.03, "abandon"), (0.02, "refund"),
            (0.05, "profile"))


def apply(rng: random.Random, mix: tuple[tuple[float, str], ...], f: CustomerFacts, now: int) -> CustomerFacts:
    """One event of the mix, as the dataflow would fold it into the customer's facts."""
    r, kind = rng.random(), mix[-1][1]
    for share, name in mix:
        if r < share:
            kind = name
            break
        r -= share
    if kind == "view":
        return replace(f, last_active=now)
    if kind == "cart":
        cart = Entry(now, "EUR", rng.randint(1_000, 30_000))
        return replace(f, last_active=now, open_carts=(cart,), last_cart_created=now)
    if kind == "email":
        return replace(f, last_active=now, emails=(*f.emails, now))
    if kind == "order":  # paid: its cart closes
        products = tuple(rng.sample(PRODUCTS, 2))
        order = Entry(now, "EUR", rng.randint(900, 40_000), 2, products, ("shoes",), (rng.choice(BRANDS),))
        return replace(f, last_active=now, orders=(*f.orders, order), open_carts=())
    if kind == "abandon":  # decided by the cart book
        return replace(f, open_carts=(), last_cart_abandoned=now)
    if kind == "refund":
        return replace(f, refunds=(*f.refunds, Entry(now, "EUR", rng.randint(500, 5_000))))
    return replace(f, attributes=attributes_of({**dict(f.attributes), "age": rng.randint(18, 80)}))  # profile updated


def measure_state(facts: list[CustomerFacts]) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copies = pickle.loads(pickle.dumps(facts))  # rebuilt as a restore would: shared strings stay shared
    in_memory = (tracemalloc.get_traced_memory()[0] - before) / len(facts)
    tracemalloc.stop()
    del copies
    pickled = sum(len(pickle.dumps(f, protocol=pickle.HIGHEST_PROTOCOL)) for f in facts) / len(facts)
    return in_memory, pickled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(7)

    definitions = {**library.rules(Subject.CUSTOMER), **generated_segments(rng, 100 - len(library.CUSTOMER_SEGMENTS))}
    ctx = Context(ZONE, CURRENCY, parse_ecb_csv(rates_csv()))
    live = SegmentSet(parse_segments(definitions, currency=CURRENCY, timezone=ZONE), ctx)
    print(f"{len(live.rules)} segments; kept one by one: {dict(live.keep.horizons)} (ms), {len(live.keep.cuts)} cuts, "
          f"{len(live.keep.items)} products/categories/brands")

    full = [customer(rng, i) for i in range(args.customers)]
    t0 = time.process_time()
    folded = [fold(f, live.keep, NOW, live.ctx) for f in full]
    fold_us = (time.process_time() - t0) / len(full) * 1e6
    full_mem, full_pickled = measure_state(full)
    mem, pickled = measure_state(folded)
    entries = sum(len(f.orders) + len(f.refunds) + len(f.emails) for f in folded) / len(folded)
    blobs = [pickle.dumps(f, protocol=pickle.HIGHEST_PROTOCOL) for f in folded]
    t0 = time.process_time()
    for blob in blobs:
        pickle.dumps(pickle.loads(blob), protocol=pickle.HIGHEST_PROTOCOL)
    blob_us = (time.process_time() - t0) / len(blobs) * 1e6
    print(f"\nstate per customer ({args.customers:,} customers, two years of history)")
    print(f"  {'':34} {'objects':>9} {'pickled':>9}")
    print(f"  {'folded (what the dataflow keeps)':34} {mem:>7.0f} B {pickled:>7.0f} B   "
          f"{entries:.1f} entries kept one by one")
    print(f"  {'unfolded (every entry, the baseline)':34} {full_mem:>7.0f} B {full_pickled:>7.0f} B   "
          f"{sum(len(f.orders) + len(f.refunds) + len(f.emails) for f in full) / len(full):.1f} entries")
    print(f"  fold: {fold_us:.1f} us per customer; held as pickled bytes, loads + dumps: {blob_us:.1f} us per event")

    for label, mix in (("real mix (REES46 shares)", REAL_MIX), ("busy mix", BUSY_MIX)):
        stream(live, folded, mix, label, args.events)


def stream(live: SegmentSet, folded: list[CustomerFacts], mix: tuple[tuple[float, str], ...], label: str, n: int) -> None:
    """The same events for every way of evaluating, each at its own time."""
    rng = random.Random(11)
    state, events, now = list(folded), [], NOW
    for _ in range(n):
        now += rng.randrange(2_000)
        i = rng.randrange(len(state))
        old = state[i]
        state[i] = new = apply(rng, mix, old, now)
        events.append((old, new, now))

    touched_total = timers = 0
    t0 = time.process_time()
    for old, new, _ in events:
        touched = live.touched(changed_inputs(old, new))
        touched_total += len(touched)
    picking = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for old, new, at in events:
        result = live.evaluate(live.touched(changed_inputs(old, new)), new, at)
        timers += sum(1 for _, nxt in result.values() if nxt is not None)
    ours = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for _, new, at in events:
        live.evaluate(live.order, new, at)
    every = (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for _, new, at in events:
        for s in live.order:
            holds(live.rules[s], new, at, live.ctx)
            next_change(live.rules[s], new, at, live.ctx)
    naive = (time.process_time() - t0) / n * 1e6

    print(f"\n{label}: {n:,} events, {touched_total / n:.1f} of {len(live.order)} segments touched per event on "
          f"average, {timers / n:.1f} with a next change")
    print(f"  {'touched segments, SegmentSet.evaluate':44} {ours:8.1f} us per event "
          f"(of which {picking:.1f} us changed_inputs + touched)")
    print(f"  {'every segment, SegmentSet.evaluate':44} {every:8.1f} us")
    print(f"  {'every segment, holds + next_change':44} {naive:8.1f} us   (baseline: a plain loop)")
    print(f"  baseline / ours: {naive / ours:.1f}x")

if __name__ == "__main__":
    main()
