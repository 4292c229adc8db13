"""The dataflow: log -> keyed by organisation -> revenue ledger -> read model.

State is per organisation, so every worker owns whole organisations and versions stay ordered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from core.config import Config, Org
from core.events import Event
from core.figures import Bucket, Record
from flows import metrics
from flows.revenue import RevenueLedger
from flows.sinks import ReadModelSink
from flows.sources import LogSource
from state.log import LogReader
from state.readmodel import ReadModel


class _LedgerLogic(StatefulBatchLogic[Event, Bucket | Record, RevenueLedger]):
    # Bytewax does not hand the key to the builder: a new ledger learns its org from its first event.
    def __init__(self, ledger: RevenueLedger | None, orgs: dict[str, Org]) -> None:
        self.ledger = ledger
        self._orgs = orgs

    def on_batch(self, values: list[Event]) -> tuple[Iterable[Bucket], bool]:
        if self.ledger is None:
            org = self._orgs[values[0].org]
            self.ledger = RevenueLedger(org.id, org.timezone, org.plan_limit)
        out = self.ledger.apply_all(values)
        metrics.EVENTS.inc(len(values))
        metrics.CHANGES.inc(len(out))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> RevenueLedger:
        assert self.ledger is not None, "a logic is only snapshotted after its first batch"
        return self.ledger


def build_flow(
    config: Config,
    open_reader: Callable[[], LogReader],
    open_model: Callable[[], ReadModel],
    partitions: int,
    until_caught_up: bool = False,
) -> Dataflow:
    orgs = dict(config.orgs)

    def known(event: Event) -> bool:
        if event.org in orgs:
            return True
        metrics.SKIPPED.labels(reason="unknown_org").inc()
        return False

    flow = Dataflow("storepulse")
    events = op.input("log", flow, LogSource(open_reader, partitions, until_caught_up))
    events = op.filter("known_orgs", events, known)
    by_org = op.key_on("by_org", events, lambda e: e.org)
    changes = op.stateful_batch("revenue", by_org, lambda resume: _LedgerLogic(resume, orgs))
    op.output("read_model", changes, ReadModelSink(open_model))
    return flow
