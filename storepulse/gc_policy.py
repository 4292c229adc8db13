"""How storepulse's processes run Python's cyclic garbage collector: one place for the policy.

What we allocate (events, order facts, buckets, request objects) makes no reference cycles of note:
reference counting frees it. The default thresholds (a gen-0 collection every 700 allocations, a
full one every 100 of those) instead walk every long-lived object again and again: a fifth of the
ingest server's CPU, a quarter of the dataflow's, twice the replay mapper's own work in profiles.
So each long-running process freezes what it built at startup out of every scan and collects young
objects rarely (`settle`), and a bulk step that builds many objects pauses the collector (`paused`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# (gen 0, gen 1, gen 2) thresholds.
SERVERS = (50_000, 50, 100)  # garbage per request, dropped at its end (700 ran it several times a batch)
# Millions of long-lived state objects: a young collection scans every object that survived since the
# last one, so its pause grows with the threshold. At 1,000,000 it paused ~0.37 s once per ~40,000
# events at bench/automation_latency.py's load (as long as a snapshot's stall, the latency tail); at
# 100,000 it pauses 16 times as often for 42-53 ms: 0.50 s in all instead of 0.37 s over 40,000 events
# (+3 us an event, bench/snapshot_cost.py), for a tail 7x shorter. Gen 1 at 10,000 keeps the
# middle collections, which scan every promoted object, as rare as before (every 1e9 net allocations).
DATAFLOW = (100_000, 10_000, 1_000)


def settle(thresholds: tuple[int, int, int]) -> None:
    """Freezes everything allocated so far (never scanned again) and sets the thresholds."""
    gc.freeze()
    gc.set_threshold(*thresholds)


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside; the collector is as it was after (it may already be off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
