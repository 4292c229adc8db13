"""The dataflow: log -> (org, event) -> one organisation's state -> read model.

One Bytewax key per organisation, so every worker owns whole organisations and versions stay
ordered. The ledger's large tables live in segment files (flows/segments.py), so they snapshot what
changed since the last epoch; the shoppers' books (customer profiles included) are still pickled
whole with the rest of the organisation. While no events arrive, `notify_at`/`on_notify` let the wall
clock move the watermark and decide carts (flows/organisation.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from core.config import Config, Org
from core.events import Event
from core.figures import Bucket, Record
from flows import metrics
from flows.organisation import Organisation
from flows.revenue import DEFAULT_HORIZON_MS
from flows.segments import SegmentStore
from flows.sinks import ReadModelSink
from flows.sources import CaughtUp, LogSource
from state.log import LogReader
from state.readmodel import ReadModel


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _Context:
    orgs: dict[str, Org]
    segments: Path
    horizon_ms: int
    clock: Callable[[], int]


Changes = list[Bucket | Record]


class _OrgLogic(StatefulBatchLogic[Event | CaughtUp, Changes, bytes]):
    """Emits everything a batch (or a tick) changed as one item: the sink writes it in one write, so
    a reader never sees the figures of a batch without its customers (Bytewax would otherwise carry
    a long list of items downstream in several containers, and the sink write them in several writes)."""

    # Bytewax does not hand the key to the builder: a new organisation learns its id from its first item.
    def __init__(self, resume: bytes | None, ctx: _Context) -> None:
        self._ctx = ctx
        self.org: Organisation | None = None
        self.store: SegmentStore | None = None
        self._too_late: dict[str, int] = {}  # per book, as last reported
        self._unmatched = 0
        if resume is not None:
            self.org = Organisation.restore(resume, lambda org_id: self._store(org_id))
            self._too_late, self._unmatched = self._counts()

    def on_batch(self, values: list[Event | CaughtUp]) -> tuple[Iterable[Changes], bool]:
        events = [v for v in values if type(v) is not CaughtUp]
        if self.org is None:
            self.org = Organisation.new(self._ctx.orgs[values[0].org], self._ctx.horizon_ms)
            self._store(self.org.ledger.org)
        now = self._ctx.clock()
        out = self.org.apply_all(events, now)
        if len(events) != len(values):
            out += self._ticked(self.org.arm(now))
        metrics.EVENTS.inc(len(events))
        self._report()
        metrics.CHANGES.inc(len(out))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Changes], bool]:
        assert self.org is not None
        out = self._ticked(self.org.tick(self._ctx.clock()))
        metrics.CHANGES.inc(len(out))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wake = None if self.org is None else self.org.next_wake(self._ctx.clock())
        return None if wake is None else datetime.fromtimestamp(wake / 1000, timezone.utc)

    def snapshot(self) -> bytes:
        assert self.org is not None and self.store is not None, "a logic is only snapshotted after its first batch"
        started = time.perf_counter()
        data = self.org.snapshot(self.store)
        metrics.SNAPSHOTS.inc()
        metrics.SNAPSHOT_SECONDS.inc(time.perf_counter() - started)
        metrics.SNAPSHOT_BYTES.inc(len(data) + self.store.last.bytes_written)
        for what, n in {**self.org.held(), **self.store.held()}.items():
            metrics.HELD.labels(org=self.org.ledger.org, what=what).set(n)
        return data

    def _store(self, org_id: str) -> SegmentStore:
        self.store = SegmentStore(self._ctx.segments, org_id)
        return self.store

    def _ticked(self, out: list[Bucket | Record]) -> list[Bucket | Record]:
        if out:
            metrics.WALL_CLOCK_TICKS.inc()
        return out

    def _counts(self) -> tuple[dict[str, int], int]:
        assert self.org is not None
        return {book: late.count for book, late in self.org.too_late().items()}, self.org.ledger.unmatched_refunds

    def _report(self) -> None:
        too_late, unmatched = self._counts()
        for book, n in too_late.items():
            if n > self._too_late.get(book, 0):
                metrics.TOO_LATE.labels(book=book).inc(n - self._too_late.get(book, 0))
        if unmatched > self._unmatched:
            metrics.UNMATCHED_REFUNDS.inc(unmatched - self._unmatched)
        self._too_late, self._unmatched = too_late, unmatched


def build_flow(
    config: Config,
    open_reader: Callable[[], LogReader],
    open_model: Callable[[], ReadModel],
    partitions: int,
    until_caught_up: bool = False,
    *,
    segments: Path,
    horizon_ms: int = DEFAULT_HORIZON_MS,
    clock: Callable[[], int] = wall_clock_ms,
    stopping: Callable[[], bool] = lambda: False,
) -> Dataflow:
    """`segments`: where organisations' segment files live, beside the Bytewax recovery partitions
    (shared by every process of a cluster, like them). `clock`: the wall clock, ms. `stopping()`
    true ends the input, so the dataflow finishes its epoch, snapshots it and returns."""
    ctx = _Context(dict(config.orgs), segments, horizon_ms, clock)
    flow = Dataflow("storepulse")
    by_org = op.input("log", flow, LogSource(open_reader, partitions, ctx.orgs, until_caught_up, stopping))
    changes = op.stateful_batch("organisation", by_org, lambda resume: _OrgLogic(resume, ctx))  # type: ignore[arg-type]
    op.output("read_model", changes, ReadModelSink(open_model))
    return flow
