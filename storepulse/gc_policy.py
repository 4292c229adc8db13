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
DATAFLOW = (1_000_000, 1_000, 1_000)  # millions of long-lived state objects


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
