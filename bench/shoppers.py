"""The shoppers' books (carts, journey, e-mail attribution: flows/shoppers.py) folding the REES46 head
(../shared/data/rees46_2019oct_head.csv.gz: 17,419 views, cart events and purchases), as the
dataflow folds them per organisation: each event, then the watermark 10 minutes behind it. CPU per
event, best of --repeat. Run it in two trees to compare them (the file is read and mapped once, outside
the timing).

    .venv/bin/python bench/shoppers.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.shoppers import Shoppers  # noqa: E402
from ingest.replay import map_file  # noqa: E402

FILE = REPO.parent / "shared" / "data" / "rees46_2019oct_head.csv.gz"
MIN = 60_000


def fold(events: list) -> tuple[float, int]:
    """CPU seconds to fold `events`, and the records they made."""
    s = Shoppers("o", "Atlantic/Cape_Verde", abandon_after_minutes=60)  # as test_carts_journey
    made = 0
    started = time.process_time()
    for e in events:
        made += len(s.apply(e))
        made += len(s.advance(e.time - 10 * MIN))
    made += len(s.advance(max(e.time for e in events) + 60 * MIN))
    return time.process_time() - started, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not FILE.exists():
        raise SystemExit(f"{FILE} is missing: this benchmark needs ../shared/data")
    events = map_file(FILE, "rees46", "o", "rees46").events
    runs = [fold(events) for _ in range(args.repeat)]
    best = min(seconds for seconds, _ in runs)
    print(f"{REPO.name}: {len(events):,} events, {runs[0][1]:,} records; fold best {best:.2f} s CPU,"
          f" {best / len(events) * 1e6:.1f} us/event (runs {', '.join(f'{s:.2f}' for s, _ in runs)})")


if __name__ == "__main__":
    main()
