"""The dataflow's input: one Bytewax partition per event-log partition, resumed from its offset.

Items come out keyed by organisation, `(org, event)`, ready for the organisation step; events of
organisations the config does not know are skipped here (counted). Once a partition has read the
log to its end for the first time since it was built, it emits `(org, CaughtUp(org))` for every
configured organisation of the partition: from then on their watermark may follow the wall clock
(flows/organisation.py says why not before).

`stopping()` true ends every partition at its next batch: the dataflow then closes its last epoch
and snapshots it, which is how `storepulse flows` stops on Ctrl-C (flows/run.py), with nothing left
to replay at the next start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from core.events import Event, event_from_json
from flows import metrics
from state.log import LogReader, partition_of

POLL_INTERVAL = timedelta(milliseconds=5)
BATCH = 10_000  # rows read at a time: bigger batches coalesce more changes per key


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The log has been read to its end: every event of `org` appended before now was emitted."""

    org: str


Item = tuple[str, Event | CaughtUp]


class _LogPartition(StatefulSourcePartition[Item, str | None]):
    def __init__(self, reader: LogReader, partition: int, partitions: int, offset: str | None,
                 until_caught_up: bool, orgs: Collection[str], stopping: Callable[[], bool]) -> None:
        self._reader = reader
        self._stopping = stopping
        self._partition = partition
        self._offset = offset
        self._awake: datetime | None = None
        self._until_caught_up = until_caught_up
        self._orgs = frozenset(orgs)
        self._mine = sorted(o for o in orgs if partition_of(o, partitions) == partition)
        self._caught_up = False

    def next_batch(self) -> list[Item]:
        if self._stopping():
            raise StopIteration
        started = time.perf_counter()
        rows = self._reader.read(self._partition, self._offset, BATCH)
        metrics.READ_SECONDS.inc(time.perf_counter() - started)
        if not rows and self._until_caught_up:
            raise StopIteration  # benchmarks and batch runs: the end of the log ends the dataflow
        out: list[Item] = []
        if rows:
            self._awake = None
            self._offset = rows[-1][0]
            orgs = self._orgs
            skipped = 0
            for _, body in rows:
                e = event_from_json(body)
                if e.org in orgs:
                    out.append((e.org, e))
                else:
                    skipped += 1
            if skipped:
                metrics.SKIPPED.labels(reason="unknown_org").inc(skipped)
        else:
            # Nothing new: come back shortly instead of spinning.
            self._awake = datetime.now(timezone.utc) + POLL_INTERVAL
        if len(rows) < BATCH and not self._caught_up and not self._until_caught_up:
            self._caught_up = True
            out.extend((org, CaughtUp(org)) for org in self._mine)
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str | None:
        return self._offset

    def close(self) -> None:
        self._reader.close()


class LogSource(FixedPartitionedSource[Item, str | None]):
    """Emits `(org, event)` in log order per partition; the resume state is the last offset read."""

    def __init__(self, open_reader: Callable[[], LogReader], partitions: int, orgs: Collection[str],
                 until_caught_up: bool = False, stopping: Callable[[], bool] = lambda: False) -> None:
        self._open_reader = open_reader
        self._stopping = stopping
        self._partitions = partitions
        self._orgs = tuple(orgs)
        self._until_caught_up = until_caught_up

    def list_parts(self) -> list[str]:
        return [f"p{i}" for i in range(self._partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _LogPartition:
        return _LogPartition(self._open_reader(), int(for_part[1:]), self._partitions, resume_state, self._until_caught_up,
                             self._orgs, self._stopping)
