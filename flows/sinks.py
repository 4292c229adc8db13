"""The dataflow's output: each organisation's changes of a batch (or tick), written to the read
model in one write with whatever else Bytewax hands over at once, so a batch shows whole or not at all.

Outputs are at-least-once (a restart replays everything since the last snapshot); the read model
ignores any value whose version it already has, so a replay changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from core.figures import Bucket, Record
from flows import metrics
from state.readmodel import ReadModel


Item = tuple[str, list[Bucket | Record]]  # (organisation, changes)


class _ReadModelPartition(StatelessSinkPartition[Item]):
    def __init__(self, model: ReadModel) -> None:
        self._model = model

    def write_batch(self, items: list[Item]) -> None:
        started = time.perf_counter()
        self._model.write([change for _, changes in items for change in changes])
        metrics.WRITE_SECONDS.inc(time.perf_counter() - started)

    def close(self) -> None:
        self._model.close()


class ReadModelSink(DynamicSink[Item]):
    def __init__(self, open_model: Callable[[], ReadModel]) -> None:
        self._open_model = open_model

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReadModelPartition:
        return _ReadModelPartition(self._open_model())
