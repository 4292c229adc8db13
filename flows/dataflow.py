"""The dataflow: log -> (org, event) -> one organisation's state -> read model.

One Bytewax key per organisation, so every worker owns whole organisations and versions stay
ordered. The ledger's large tables live in snapshot files (flows/snapshot_files.py), so they snapshot what
changed since the last epoch; the shoppers' books (customer profiles included) are still pickled
whole with the rest of the organisation. While no events arrive, `notify_at`/`on_notify` let the wall
clock move the watermark and decide carts (flows/organisation.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from core.changes import Bucket, Change, Record
from core.config import Config, Org
from core.events import Event
from core.limits import problem
from core.rates import Rates
from core.records import Value
from flows import metrics, quarantine, snapshots
from flows.organisation import Organisation
from flows.outbox_sink import ActionOutbox, OutboxSink
from flows.quarantine import Unreadable
from flows.revenue import DEFAULT_HORIZON_MS, OLD_RECOVERY_STATE
from flows.sinks import Output, ReadModelSink
from flows.snapshot_files import SnapshotFiles
from flows.sources import CaughtUp, LogSource, wall_clock_ms
from flows.write_behind import ModelAt, WriteBehindSink
from notifier.actions import Action
from state.log import LogReader
from state.readmodel import ReadModel

log = logging.getLogger("storepulse.flows")


@dataclass(frozen=True)
class _Context:
    orgs: dict[str, Org]
    files_dir: Path
    horizon_ms: int
    clock: Callable[[], int]
    rates: Rates | None = None  # what segment rules and automations' `if` convert other currencies with


Changes = list[Change]
# What a snapshot of an organisation whose recovery state could not be read holds: this, then that state
# untouched. Such an organisation stays stopped at every later start (its input offsets have moved on
# without it, so resuming from the old state would silently miss events) until it is rebuilt from the log.
BROKEN = b"storepulse-unreadable-recovery-state:"
# What was applied to an organisation since its latest snapshot, to apply again after a rollback:
# ("batch", events, now), ("arm", [], now) or ("tick", [], now).
Step = tuple[str, list[Event], int]


class _OrgLogic(StatefulBatchLogic[Event | Unreadable | CaughtUp, Output, bytes]):
    """Emits everything a batch (or a tick) changed as one item: the sink writes it in one write, so
    a reader never sees the figures of a batch without its customers (Bytewax would otherwise carry
    a long list of items downstream in several containers, and the sink write them in several writes).

    An event it cannot fold is quarantined, never fatal (flows/quarantine.py): when folding a batch
    raises, the organisation is rolled back to its latest snapshot, the steps since are applied
    again, and the batch is folded one event at a time, each failing event quarantined and rolled
    back. Every event that folds is folded exactly as it would have been without the poison."""

    # Bytewax does not hand the key to the builder: a new organisation learns its id from its first item.
    def __init__(self, resume: bytes | None, ctx: _Context) -> None:
        self._ctx = ctx
        self.org: Organisation | None = None
        self.files: SnapshotFiles | None = None
        self._too_late: dict[str, int] = {}  # per book, as last reported
        self._unmatched = 0
        self._latest = resume  # the latest snapshot: what a rollback restores
        self._armed = False  # whether the organisation was armed at that snapshot (restore disarms)
        self._since: list[Step] = []
        self._broken: tuple[bytes, str] | None = None  # (the state as found, why it cannot be read)
        self._said_broken = False
        if resume is not None:
            try:
                self.org = self._restored(resume)
            except Exception as exc:  # one organisation's state must not stop every organisation's figures
                self._broken = resume, quarantine.describe(exc)
            else:
                self._too_late, self._unmatched = self._counts()

    def on_batch(self, values: list[Event | Unreadable | CaughtUp]) -> tuple[Iterable[Output], bool]:
        if self._broken is not None:
            return self._stopped(values[0].org), StatefulBatchLogic.RETAIN
        if self.org is None:
            self.org = Organisation.new(self._ctx.orgs[values[0].org], self._ctx.horizon_ms).use_rates(self._ctx.rates)
            self._files(self.org.ledger.org)
        now = self._ctx.clock()
        events: list[Event] = []
        out: Changes = []
        caught_up: int | None = None
        for v in values:
            if type(v) is CaughtUp:
                caught_up = v.at
            elif type(v) is Unreadable:
                out.append(self._quarantine(v, quarantine.UNREADABLE, v.error))
            else:
                event = cast(Event, v)  # neither CaughtUp nor Unreadable (mypy does not narrow on type(v) is)
                why = problem(event)
                if why is None:
                    events.append(event)
                else:
                    out.append(self._quarantine(event, quarantine.OUT_OF_RANGE, why))
        out += self._fold(events, now)
        if caught_up is not None:
            out += self._advance("arm", now)
        metrics.EVENTS.inc(len(events))
        self._report()
        metrics.CHANGES.inc(len(out))
        actions = self._actions()
        self._pack_ahead()
        return ([Output(out, caught_up, actions)] if out or caught_up is not None or actions else []), \
            StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[Output], bool]:
        out = self._advance("tick", self._ctx.clock())
        if self.org is not None:
            self._report_segments()
        metrics.CHANGES.inc(len(out))
        actions = self._actions()
        self._pack_ahead()
        return ([Output(out, None, actions)] if out or actions else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wake = None if self.org is None else self.org.next_wake(self._ctx.clock())
        return None if wake is None else datetime.fromtimestamp(wake / 1000, UTC)

    def snapshot(self) -> bytes:
        if self._broken is not None:
            state = self._broken[0]
            return state if state.startswith(BROKEN) else BROKEN + state
        assert self.org is not None and self.files is not None, "a logic is only snapshotted after its first batch"
        started = time.perf_counter()
        data = snapshots.save(self.org, self.files)
        self._latest, self._armed, self._since = data, self.org.armed, []
        metrics.SNAPSHOTS.inc()
        metrics.SNAPSHOT_SECONDS.inc(time.perf_counter() - started)
        metrics.SNAPSHOT_BYTES.inc(len(data) + self.files.last.bytes_written)
        for what, n in {**self.org.held(), **self.files.held()}.items():
            metrics.HELD.labels(org=self.org.ledger.org, what=what).set(n)
        return data

    def _pack_ahead(self) -> None:
        """The segment states this batch changed, packed now rather than all at the epoch's end, where
        the snapshot stalls the dataflow, and a step of a snapshot files' merge (docs/operations.md,
        "What a snapshot costs")."""
        if self.org is not None and self.files is not None and self._broken is None:
            started = time.perf_counter()
            if self.org.pack_ahead() + self.files.merge_step(self.org.keeps):
                metrics.SNAPSHOT_AHEAD_SECONDS.inc(time.perf_counter() - started)

    # --- folding, with poison isolated -----------------------------------------------------------

    def _fold(self, events: list[Event], now: int) -> Changes:
        if not events:
            return []
        try:
            return self._step("batch", events, now)
        except Exception:  # whatever the reason, one event must not stop the figures
            return self._isolate(events, now)

    def _step(self, kind: str, events: list[Event], now: int) -> Changes:
        """Applies one step, checks its changes can be stored, and journals it; raises if either fails
        (the organisation may then be half-changed: the caller rolls back)."""
        assert self.org is not None
        if kind == "batch":
            out = self.org.apply_all(events, now)
        elif kind == "arm":
            out = self.org.arm(now)
        else:
            out = self.org.tick(now)
        why = quarantine.unstorable(out)
        if why is not None:
            raise quarantine.Unstorable(why)
        self._since.append((kind, events, now))
        return out

    def _advance(self, kind: str, now: int) -> Changes:
        """Arms or ticks the wall clock. Should that ever fail, the organisation is rolled back and
        waits for the next tick, logged, instead of stopping every organisation's figures."""
        try:
            return self._ticked(self._step(kind, [], now))
        except Exception:
            log.exception("organisation %s: the wall-clock %s failed; rolled back", self._ctx_org(), kind)
            self._rollback()
            return []

    def _actions(self) -> list[Action]:
        actions = [] if self.org is None else self.org.take_actions()
        for a in actions:
            metrics.ACTIONS.labels(trigger=a.trigger).inc()
        return actions

    def _ctx_org(self) -> str:
        return "?" if self.org is None else self.org.ledger.org

    def _isolate(self, events: list[Event], now: int) -> Changes:
        self._rollback()
        last: dict[tuple[str, str], Change] = {}  # each key's newest value, as one batch gives
        poisoned: Changes = []
        for e in events:
            try:
                changes = self._step("batch", [e], now)
            except Exception as exc:
                self._rollback()
                poisoned.append(self._quarantine(e, quarantine.FOLD_FAILED, quarantine.describe(exc)))
                continue
            for c in changes:
                last[("", c.key) if type(c) is Bucket else (c.kind, c.key)] = c  # type: ignore[union-attr]  # a Record: mypy does not narrow on type(c) is
        return poisoned + list(last.values())

    def _rollback(self) -> None:
        """The organisation as at its latest snapshot, with every journalled step since applied again."""
        org = self._ctx.orgs[self.org.ledger.org] if self.org is not None else None
        assert org is not None
        if self._latest is None:
            self.org = Organisation.new(org, self._ctx.horizon_ms).use_rates(self._ctx.rates)
        else:
            self.org = self._restored(self._latest, prune=False)
            self.org.armed = self._armed
        steps, self._since = self._since, []
        for kind, events, now in steps:
            self._step(kind, events, now)

    def _quarantine(self, poison: Event | Unreadable, reason: str, error: str) -> Record[Value]:
        assert self.org is not None
        org = self.org.ledger.org
        log.warning("organisation %s: event %r of store %r quarantined (%s): %s", org, poison.id, poison.store,
                    reason, error)
        metrics.QUARANTINED.labels(reason=reason).inc()
        return quarantine.record(org, self.org.version, self.org.shoppers.carts.days, poison, reason, error)

    # --- internals -------------------------------------------------------------------------------

    def _stopped(self, org: str) -> list[Output]:
        """An organisation whose recovery state cannot be read folds nothing and never reports being caught
        up, so its figures show as stale (/healthz, its health endpoint, the dashboard); the others go on.
        Its events stay in the log for the rebuild (docs/operations.md)."""
        assert self._broken is not None
        if not self._said_broken:  # once per process, not at every batch
            self._said_broken = True
            log.error("organisation %s: its recovery state cannot be read (%s); its figures are stopped while "
                      "every other organisation goes on. Rebuild it: %s", org, self._broken[1], OLD_RECOVERY_STATE)
            metrics.BROKEN.labels(org=org).set(1)
        return []

    def _restored(self, data: bytes, prune: bool = True) -> Organisation:
        if data.startswith(BROKEN):
            raise RuntimeError("its state was already unreadable at an earlier start")
        org = snapshots.load(data, self._files, prune)
        org = org.with_segments(self._ctx.orgs[org.ledger.org]).use_rates(self._ctx.rates)
        org.automations.define(self._ctx.orgs[org.ledger.org])  # the definitions of this start's config
        return org

    def _files(self, org_id: str) -> SnapshotFiles:
        if self.files is None or self.files.org != org_id:
            self.files = SnapshotFiles(self._ctx.files_dir, org_id, stepwise=True)  # merged by _pack_ahead
        return self.files

    def _ticked(self, out: Changes) -> Changes:
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
        self._report_segments()

    def _report_segments(self) -> None:
        assert self.org is not None
        segments = self.org.segments
        stats, segments.stats = segments.stats, type(segments.stats)()
        metrics.SEGMENT_EVALUATIONS.inc(stats.evaluations)
        metrics.SEGMENT_CHANGES.inc(stats.changes)
        metrics.SEGMENT_WITHDRAWN.inc(stats.withdrawn)
        metrics.SEGMENT_SECONDS.inc(stats.seconds)
        metrics.SEGMENT_UNCONVERTED.inc(stats.unconverted)
        metrics.SEGMENT_TIMERS.labels(org=self.org.ledger.org).set(len(segments.timers))


def build_flow(
    config: Config,
    open_reader: Callable[[], LogReader],
    open_model: Callable[[], ReadModel],
    partitions: int,
    until_caught_up: bool = False,
    *,
    files_dir: Path,
    horizon_ms: int = DEFAULT_HORIZON_MS,
    clock: Callable[[], int] = wall_clock_ms,
    stopping: Callable[[], bool] = lambda: False,
    open_outbox: Callable[[], ActionOutbox] | None = None,
    rates: Rates | None = None,
    write_behind: ModelAt | None = None,
) -> Dataflow:
    """`files_dir`: where organisations' snapshot files live, beside the Bytewax recovery partitions
    (shared by every process of a cluster, like them). `clock`: the wall clock, ms. `stopping()`
    true ends the input, so the dataflow finishes its epoch, snapshots it and returns. `open_outbox`:
    where the automations' actions go (flows/outbox_sink.py); None: nowhere (no notifier runs).
    `rates`: the exchange rates segment rules convert other currencies with (None: they count as 0).
    `write_behind`: where a writer process of its own opens the read model, to write it while the worker
    folds (flows/write_behind.py; `open_model` is then unused); only for a dataflow of one worker, which
    every item then reaches."""
    ctx = _Context(dict(config.orgs), files_dir, horizon_ms, clock, rates)
    flow = Dataflow("storepulse")
    by_org = op.input("log", flow, LogSource(open_reader, partitions, ctx.orgs, until_caught_up, stopping, clock))
    changes = op.stateful_batch("organisation", by_org, lambda resume: _OrgLogic(resume, ctx))
    if write_behind is not None:  # the actions go to the outbox after their batch's changes are written
        op.output("read_model", op.map("with_org", changes, lambda item: (item[0], item)),
                  WriteBehindSink(write_behind, open_outbox, clock))
        return flow
    op.output("read_model", changes, ReadModelSink(open_model))
    if open_outbox is not None:
        actions = op.filter_map("actions", changes, lambda item: (item[0], item[1].actions) if item[1].actions else None)
        op.output("outbox", actions, OutboxSink(open_outbox, clock))
    return flow
