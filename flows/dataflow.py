"""The dataflow: log -> keyed by organisation -> revenue ledger and shoppers' books -> read model.

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
from flows.organisation import Organisation
from flows.sinks import ReadModelSink
from flows.sources import LogSource
from state.log import LogReader
from state.readmodel import ReadModel


class _OrgLogic(StatefulBatchLogic[Event, Bucket | Record, Organisation]):
    # Bytewax does not hand the key to the builder: a new organisation learns its id from its first event.
    def __init__(self, state: Organisation | None, orgs: dict[str, Org]) -> None:
        self.state = state
        self._orgs = orgs

    def on_batch(self, values: list[Event]) -> tuple[Iterable[Bucket | Record], bool]:
        if self.state is None:
            self.state = Organisation.new(self._orgs[values[0].org])
        out = self.state.apply_all(values)
        metrics.EVENTS.inc(len(values))
        metrics.CHANGES.inc(len(out))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> Organisation:
        assert self.state is not None, "a logic is only snapshotted after its first batch"
        return self.state


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
    changes = op.stateful_batch("organisation", by_org, lambda resume: _OrgLogic(resume, orgs))
    op.output("read_model", changes, ReadModelSink(open_model))
    return flow
