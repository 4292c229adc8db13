"""The dataflow's output: each organisation's changes of a batch (or tick), written to the read
model in one write with whatever else Bytewax hands over at once, so a batch shows whole or not at all.

Outputs are at-least-once (a restart replays everything since the last snapshot); the read model
ignores any value whose version it already has, so a replay changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.changes import Change
from flows import metrics
from notifier.actions import Action
from state.readmodel import ReadModel


@dataclass(frozen=True, slots=True)
class Output:
    """What the organisation step emits for one batch or tick: its changes, and, when the batch
    carried CaughtUp, the wall-clock time up to which the organisation's figures hold everything."""

    changes: list[Change]
    caught_up_at: int | None = None
    actions: list[Action] = field(default_factory=list)  # automations released: for the outbox (flows/outbox_sink.py)


Item = tuple[str, Output]  # (organisation, output)


def write(model: ReadModel, items: list[Item]) -> None:
    """One write of the items' changes, then their caught-up times: after the changes, as the read side
    must never be told of figures it cannot see yet."""
    started = time.perf_counter()
    model.write([change for _, out in items for change in out.changes])
    caught_up: dict[str, int] = {}
    for org, out in items:
        if out.caught_up_at is not None:
            caught_up[org] = max(caught_up.get(org, 0), out.caught_up_at)
    if caught_up:
        model.caught_up(caught_up)
    metrics.WRITE_SECONDS.inc(time.perf_counter() - started)


class _ReadModelPartition(StatelessSinkPartition[Item]):
    def __init__(self, model: ReadModel) -> None:
        self._model = model

    def write_batch(self, items: list[Item]) -> None:
        write(self._model, items)

    def close(self) -> None:
        self._model.close()


class ReadModelSink(DynamicSink[Item]):
    def __init__(self, open_model: Callable[[], ReadModel]) -> None:
        self._open_model = open_model

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReadModelPartition:
        return _ReadModelPartition(self._open_model())
