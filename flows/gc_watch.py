"""The cyclic garbage collector's pauses in the dataflow process, for Prometheus. A pause stalls every
event arriving meanwhile as a snapshot does: under the dataflow's policy (storepulse/gc_policy.py,
DATAFLOW) a young-generation collection scans what survived since the last one: at a threshold of a
million, ~0.4 s once per ~40,000 events at bench/automation_latency.py's load, as long as a snapshot's
stall was; at 100,000 (now) ~50 ms 16 times as often (bench/snapshot_cost.py; bench/RESULTS.md).
Counted here so that the latency bench and an operator see it beside the snapshot's time
(`storepulse_flow_gc_seconds_total`, `_gc_pauses_total`, `_gc_longest_pause_seconds`)."""

from __future__ import annotations

import gc
import time

from flows import metrics

_started, _longest = [0.0], [0.0]


def _observe(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _started[0]
    metrics.GC_PAUSES.inc()
    metrics.GC_SECONDS.inc(took)
    if took > _longest[0]:
        _longest[0] = took
        metrics.GC_LONGEST.set(took)


def watch() -> None:
    """Counts every collection of this process from now on (once, however often called)."""
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)
