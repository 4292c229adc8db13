"""The dataflow's input: one Bytewax partition per event-log partition, resumed from its offset.

Items come out keyed by organisation, `(org, event)`, ready for the organisation step; events of
organisations the config does not know are skipped here (counted). A row that cannot be read back
as an event comes out as `(org, Unreadable(...))` for the organisation step to quarantine
(flows/quarantine.py); one that does not even name an organisation is skipped, counted and logged.
Whenever a partition has read the log to its end, at most once every BEAT, it emits
`(org, CaughtUp(org, at))` for every configured organisation of the partition: the first arms their
watermark to follow the wall clock (flows/organisation.py says why not before), and each tells the
read side that the figures hold everything appended before `at` (how it knows they are not stale).

`stopping()` true ends every partition at its next batch: the dataflow then closes its last epoch
and snapshots it, which is how `storepulse flows` stops on Ctrl-C (flows/run.py), with nothing left
to replay at the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from core.events import Event, event_from_json
from flows import metrics
from flows.quarantine import Unreadable
from state.log import LogReader, partition_of

POLL_INTERVAL = timedelta(milliseconds=5)
BATCH = 10_000  # rows read at a time: bigger batches coalesce more changes per key
BEAT_MS = 1000
log = logging.getLogger("storepulse.flows")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The log has been read to its end: every event of `org` appended before `at` (wall clock, ms)
    was emitted."""

    org: str
    at: int = 0


Item = tuple[str, Event | Unreadable | CaughtUp]


def _unreadable(body: bytes, error: Exception) -> Unreadable | None:
    """The row as an Unreadable of its organisation, or None when it names none."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("org"), str):
        return None
    return Unreadable(d["org"], str(d.get("id", "")), str(d.get("store", "")), body, f"{type(error).__name__}: {error}")


class _LogPartition(StatefulSourcePartition[Item, str | None]):
    def __init__(self, reader: LogReader, partition: int, partitions: int, offset: str | None,
                 until_caught_up: bool, orgs: Collection[str], stopping: Callable[[], bool],
                 clock: Callable[[], int]) -> None:
        self._reader = reader
        self._clock = clock
        self._stopping = stopping
        self._partition = partition
        self._offset = offset
        self._awake: datetime | None = None
        self._until_caught_up = until_caught_up
        self._orgs = frozenset(orgs)
        self._mine = sorted(o for o in orgs if partition_of(o, partitions) == partition)
        self._beat_at: int | None = None  # when CaughtUp was last emitted (wall clock, ms)

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
            for offset, body in rows:
                try:
                    e: Event | Unreadable = event_from_json(body)
                except Exception as exc:  # any row that is no event is quarantined, not fatal
                    unreadable = _unreadable(body, exc)
                    if unreadable is None:
                        log.error("log partition %d offset %s is not an event of any organisation: skipped (%s)",
                                  self._partition, offset, exc)
                        metrics.SKIPPED.labels(reason="unreadable").inc()
                        continue
                    e = unreadable
                if e.org in orgs:
                    out.append((e.org, e))
                else:
                    skipped += 1
            if skipped:
                metrics.SKIPPED.labels(reason="unknown_org").inc(skipped)
        else:
            # Nothing new: come back shortly instead of spinning.
            self._awake = datetime.now(UTC) + POLL_INTERVAL
        if len(rows) < BATCH and not self._until_caught_up:
            now = self._clock()
            if self._beat_at is None or now - self._beat_at >= BEAT_MS:
                self._beat_at = now
                out.extend((org, CaughtUp(org, now)) for org in self._mine)
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
                 until_caught_up: bool = False, stopping: Callable[[], bool] = lambda: False,
                 clock: Callable[[], int] = wall_clock_ms) -> None:
        self._open_reader = open_reader
        self._clock = clock
        self._stopping = stopping
        self._partitions = partitions
        self._orgs = tuple(orgs)
        self._until_caught_up = until_caught_up

    def list_parts(self) -> list[str]:
        return [f"p{i}" for i in range(self._partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _LogPartition:
        return _LogPartition(self._open_reader(), int(for_part[1:]), self._partitions, resume_state, self._until_caught_up,
                             self._orgs, self._stopping, self._clock)
