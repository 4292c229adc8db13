"""The dataflow's second output: the automations' actions, put into the notifier's durable outbox.

Outputs are at-least-once (a restart replays everything since the last snapshot, and the replay
releases the same actions with the same keys); the outbox keeps one delivery per (key, channel),
so what a recipient gets is exactly once. `ActionOutbox` is the one method of notifier/outbox.py's
`Outbox` this side needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import metrics
from notifier.actions import Action


class ActionOutbox(Protocol):
    def put(self, actions: Sequence[Action], now: int) -> int:
        """Adds each action's delivery unless its (key, channel) is already there; returns how many were new."""
        ...

    def close(self) -> None: ...


Item = tuple[str, list[Action]]  # (organisation, actions)


class _OutboxPartition(StatelessSinkPartition[Item]):
    def __init__(self, outbox: ActionOutbox, clock: Callable[[], int]) -> None:
        self._outbox, self._clock = outbox, clock

    def write_batch(self, items: list[Item]) -> None:
        actions = [a for _, batch in items for a in batch]
        if actions:
            started = time.perf_counter()
            self._outbox.put(actions, self._clock())
            metrics.OUTBOX_SECONDS.inc(time.perf_counter() - started)

    def close(self) -> None:
        self._outbox.close()


class OutboxSink(DynamicSink[Item]):
    def __init__(self, open_outbox: Callable[[], ActionOutbox], clock: Callable[[], int]) -> None:
        self._open_outbox, self._clock = open_outbox, clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _OutboxPartition:
        return _OutboxPartition(self._open_outbox(), self._clock)
