"""The read side's kept parts across a restart (ws_gateway/kept_file.py), in one process, same run: warming
with nothing kept (what a start without the file computes), the file written as the gateway writes it
(a forked child: its time, the fork's hold and the child's private memory), then warming a new cache
that takes the file first.

Over the read model bench/read_api.py writes (1M customers, 1M orders over 90 days; its read side's clock):

    .venv/bin/python bench/read_api.py --db /tmp/sp-dash-1m/readmodel.sqlite3 --load-only
    .venv/bin/python bench/kept_parts.py [--db /tmp/sp-dash-1m/readmodel.sqlite3]

The file goes beside the model (readside-kept.pickle), as `storepulse up --data-dir` keeps it.
bench/dashboard.py --read-model DIR --restart measures the same through `storepulse up` and Chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# These imports need the repository on sys.path (run as a script).
from bench.read_api import CONFIG, NOW
from core.config import parse_config
from state.sqlite_readmodel import SqliteReadModel
from storepulse.rates_source import default_rates
from ws_gateway import kept_file, warm_start
from ws_gateway.day_cache import DayCache


def private_mb(pid: int) -> tuple[int, int]:
    """(RSS, private dirty) of a process in MB (/proc/PID/smaps_rollup)."""
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("Rss", "Private_Dirty"):
                got[name] = int(value.split()[0]) // 1024
    return got["Rss"], got["Private_Dirty"]


def save(cache: DayCache, kept: kept_file.KeptFile) -> None:
    """The gateway's background save (a forked child), timed, with the child's memory sampled every 0.2 s:
    its private pages are what the save costs beside the gateway's own."""
    print(f"this process: RSS {private_mb(os.getpid())[0]:,} MB", flush=True)
    began = time.perf_counter()
    pid = kept_file.save_in_background(cache, kept)
    held = time.perf_counter() - began
    peak = 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        with contextlib.suppress(OSError):
            peak = max(peak, private_mb(pid)[1])
        time.sleep(0.2)
    assert os.waitstatus_to_exitcode(status) == 0
    print(f"saved {kept.path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - began:.1f} s by a forked child "
          f"(requests would have waited {held * 1000:.0f} ms for the fork); the child's private pages at most "
          f"{peak:,} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("/tmp/sp-dash-1m/readmodel.sqlite3"))
    args = ap.parse_args()
    config, rates = parse_config(CONFIG, {}), default_rates(None)[0]
    model = SqliteReadModel(args.db)
    kept = kept_file.at(args.db.parent, model, config, rates)
    assert kept is not None
    kept.path.unlink(missing_ok=True)
    for run in ("nothing kept", "from the file"):
        cache = DayCache()
        # without the file, no kept file at all: no background save of warming's own (this bench saves below);
        # from the file, nothing changes after it is taken, so nothing is saved again
        warming = warm_start.start(cache, model, config.orgs.values(), rates, lambda: NOW,
                                   kept if run == "from the file" else None)
        began = time.perf_counter()
        warming.wait()
        took = time.perf_counter() - began
        print(f"{run}: warming {took:.1f} s", flush=True)
        for what, seconds in warming.took:
            print(f"  {what}: {seconds:.2f} s")
        warming.close()
        if run == "nothing kept":
            save(cache, kept)
    model.close()


if __name__ == "__main__":
    main()
