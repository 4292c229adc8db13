"""Live segments in the organisation's state: the UCI Online Retail file folded by `Organisation`
(what the dataflow runs per batch), with the 39 predefined customer segments and 61 more (100 in all;
--products: and the 9 predefined product segments), against the same fold without segments, in the same run. Prints CPU time, events per second, the segments'
share and their cost per event, evaluations and changes, and the pickled state.

    .venv/bin/python bench/segments_live.py [--batch 500] [--extra 61] [--products] [--no-skip]
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.config import parse_config  # noqa: E402
from core.definitions import put_event  # noqa: E402
from core.events import Event  # noqa: E402
from flows.membership import Membership  # noqa: E402
from flows.organisation import Organisation  # noqa: E402
from flows.product_segments import ProductMembership  # noqa: E402
from flows.snapshot_files import _dumps  # noqa: E402
from ingest.replay import map_file  # noqa: E402

FILE = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CONFIG = '[orgs.retail]\ntimezone = "Europe/London"\ncurrency = "GBP"\ntoken = "retail-token-0123456789"\n' \
         'product_segments = {products}\n' \
         '[orgs.retail.stores.uk]\nprovider = "events"\nsecret = "retail-key-0123456789"\n'


def extra_segments(n: int) -> list[dict[str, object]]:
    """n more rules mixing windows, thresholds, products and combinators."""
    products = ["85123A", "22423", "85099B", "47566", "20725", "84879", "22720", "22197"]
    out: list[dict[str, object]] = []
    for i in range(n):
        days = (7, 30, 90, 180)[i % 4]
        kind = i % 6
        if kind == 0:
            out.append({"spent": {"gte": f"{100 * (1 + i % 9)}.00", "within": f"{days}d"}})
        elif kind == 1:
            out.append({"orders": {"gte": 1 + i % 5, "within": f"{days}d"}})
        elif kind == 2:
            out.append({"bought_product": {"gte": 1, "product": products[i % len(products)], "within": f"{days}d"}})
        elif kind == 3:
            out.append({"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": f"{days}d"}}]})
        elif kind == 4:
            out.append({"any": [{"order_value": {"gte": f"{50 * (1 + i % 7)}.00"}}, {"items": {"gte": 10 + i}}]})
        else:
            out.append({"not": {"refunds": {"gte": 1, "within": f"{days}d"}}})
    return out


def fold(events: list[Event], batch: int, with_segments: bool, extra: int,
         products: bool = False) -> tuple[float, Organisation]:
    org = Organisation.new(parse_config(CONFIG.format(products=str(products).lower()), {}).orgs["retail"])
    if not with_segments:
        org.segments = Membership("retail", "Europe/London", "GBP", {})
        org.products = ProductMembership("retail", "Europe/London", "GBP", {})
    defs = [put_event("retail", "segment", f"x{i}", {"name": f"x{i}", "rule": r}, 0, f"d{i}")
            for i, r in enumerate(extra_segments(extra))] if with_segments else []
    org.apply_all(defs)
    started = time.process_time()
    for i in range(0, len(events), batch):
        org.apply_all(events[i:i + batch])
    return time.process_time() - started, org


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--extra", type=int, default=61)
    p.add_argument("--products", action="store_true", help="the predefined product segments too")
    p.add_argument("--no-skip", action="store_true",
                   help="also fold evaluating every touched segment (no skipping of those an input cannot flip)")
    args = p.parse_args()
    events = map_file(FILE, "online-retail", "retail", "uk").events
    plain, _ = fold(events, args.batch, False, 0)
    live, org = fold(events, args.batch, True, args.extra, args.products)
    s = org.segments
    n = len(events)
    p = org.products
    print(f"{n} events ({FILE.name}), batches of {args.batch}, {len(s.live.order)} customer segments and"
          f" {len(p.live.order)} product segments ({len({id(r) for r in s.live.rules.values()})} distinct customer"
          f" rules: equal ones are evaluated once)")
    print(f"  baseline, the same fold without segments: {plain:6.2f} s CPU  {n / plain:9,.0f} events/s")
    print(f"  with segments:                            {live:6.2f} s CPU  {n / live:9,.0f} events/s"
          f"  ({plain / live:.2f} of the baseline)")
    print(f"  segments' share: {(live - plain) / n * 1e6:.1f} us CPU/event, {s.stats.evaluations / n:.1f} segment"
          f" evaluations/event ({(live - plain) / s.stats.evaluations * 1e6:.1f} us each, all told),"
          f" {s.stats.changes} changes, {s.stats.withdrawn} withdrawn; products: {p.stats.evaluations / n:.1f}"
          f" evaluations/event, {p.stats.changes} changes")
    print(f"  of which evaluating the rules (the book's own timer around SegmentSet.evaluate):"
          f" {s.stats.seconds / n * 1e6:.1f} us/event, {s.stats.seconds / s.stats.evaluations * 1e6:.2f} us per segment"
          f" evaluation (wall clock)")
    if args.no_skip:  # the same run's baseline for core/rules/monotone.py: every touched segment evaluated
        steady_bits = Membership._steady_bits
        Membership._steady_bits = lambda self, s, growth, now: 0  # type: ignore[method-assign]
        try:
            every, org_every = fold(events, args.batch, True, args.extra, args.products)
        finally:
            Membership._steady_bits = steady_bits  # type: ignore[method-assign]
        e = org_every.segments.stats
        print(f"  evaluating every touched segment (no skipping): {every:6.2f} s CPU, segments' share"
              f" {(every - plain) / n * 1e6:.1f} us CPU/event, {e.evaluations / n:.1f} evaluations/event, evaluating"
              f" {e.seconds / n * 1e6:.1f} us/event; skipping: {s.stats.evaluations / n:.1f} evaluations/event,"
              f" {s.stats.seconds / n * 1e6:.1f} us/event; same changes: {e.changes == s.stats.changes}")
    # what a snapshot writes for them (flows/snapshot_files.py pickles the customers without a memo), and
    # what they hold in memory (a copy of them unpickled, under tracemalloc)
    n_customers = len(s.customers)
    written = len(_dumps(s.tables()))
    whole = pickle.dumps(s.customers, protocol=pickle.HIGHEST_PROTOCOL)
    gc.collect()
    tracemalloc.start()
    copy = pickle.loads(whole)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copy
    print(f"  segment state for {n_customers} customers: snapshot {written / n_customers:,.0f} B each,"
          f" memory {held / n_customers:,.0f} B each ({s.held()['steps']} kept steps)")

if __name__ == "__main__":
    main()
