"""The dataflow's input: one Bytewax partition per event-log partition, resumed from its offset."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from core.events import Event, event_from_json
from state.log import LogReader

POLL_INTERVAL = timedelta(milliseconds=5)
BATCH = 2000


class _LogPartition(StatefulSourcePartition[Event, str | None]):
    def __init__(self, reader: LogReader, partition: int, offset: str | None, until_caught_up: bool) -> None:
        self._reader = reader
        self._partition = partition
        self._offset = offset
        self._awake: datetime | None = None
        self._until_caught_up = until_caught_up

    def next_batch(self) -> list[Event]:
        rows = self._reader.read(self._partition, self._offset, BATCH)
        if not rows and self._until_caught_up:
            raise StopIteration  # benchmarks and batch runs: the end of the log ends the dataflow
        if not rows:
            # Nothing new: come back shortly instead of spinning.
            self._awake = datetime.now(timezone.utc) + POLL_INTERVAL
            return []
        self._awake = None
        self._offset = rows[-1][0]
        return [event_from_json(body) for _, body in rows]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str | None:
        return self._offset

    def close(self) -> None:
        self._reader.close()


class LogSource(FixedPartitionedSource[Event, str | None]):
    """Emits canonical events in log order per partition; the resume state is the last offset read."""

    def __init__(self, open_reader: Callable[[], LogReader], partitions: int, until_caught_up: bool = False) -> None:
        self._open_reader = open_reader
        self._partitions = partitions
        self._until_caught_up = until_caught_up

    def list_parts(self) -> list[str]:
        return [f"p{i}" for i in range(self._partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _LogPartition:
        return _LogPartition(self._open_reader(), int(for_part[1:]), resume_state, self._until_caught_up)
