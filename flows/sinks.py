"""The dataflow's output: buckets written to the read model, which publishes each change.

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


class _ReadModelPartition(StatelessSinkPartition[tuple[str, Bucket | Record]]):
    def __init__(self, model: ReadModel) -> None:
        self._model = model

    def write_batch(self, items: list[tuple[str, Bucket | Record]]) -> None:
        started = time.perf_counter()
        self._model.write([change for _, change in items])
        metrics.WRITE_SECONDS.inc(time.perf_counter() - started)

    def close(self) -> None:
        self._model.close()


class ReadModelSink(DynamicSink[tuple[str, Bucket | Record]]):
    def __init__(self, open_model: Callable[[], ReadModel]) -> None:
        self._open_model = open_model

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReadModelPartition:
        return _ReadModelPartition(self._open_model())
