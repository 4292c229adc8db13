"""The event log interface: durable, partitioned by organisation, deduplicated by event id.

Writers (ingest) append asynchronously; readers (the dataflow's source) read one partition from an
offset, synchronously. Offsets are opaque strings that only increase within a partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from core.events import Event

DEFAULT_PARTITIONS = 4


class LogUnavailable(Exception):
    """The log cannot take writes now; ingest answers 503 so the sender retries."""


def partition_of(org: str, partitions: int) -> int:
    """Every event of an organisation goes to one partition, so its order is kept."""
    return zlib.crc32(org.encode()) % partitions


Row = tuple[int, str, str, bytes]  # (partition, org, event id, the event as JSON)
T = TypeVar("T")


def rows_of(events: Sequence[Event], partitions: int) -> list[Row]:
    """The log rows of one caller's events. Made in `append`, before the events join other
    callers' in a shared write: an event that cannot be serialised fails its own caller only."""
    return [(partition_of(e.org, partitions), e.org, e.id, e.to_json()) for e in events]


def per_caller(batch: Sequence[tuple[Sequence[Row], T]], flags: list[bool]) -> Iterator[tuple[T, list[bool]]]:
    """Splits the flags of a shared write (rows in batch order) back into each caller's own."""
    at = 0
    for rows, caller in batch:
        yield caller, flags[at:at + len(rows)]
        at += len(rows)


class EventLog(Protocol):
    partitions: int

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Appends each event unless its (org, id) was seen; True where appended, False for a duplicate.

        Returns only once the appended events are durable. Raises LogUnavailable otherwise.
        """
        ...

    async def close(self) -> None: ...


class LogReader(Protocol):
    partitions: int

    def read(self, partition: int, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` (offset, event bytes) entries of a partition after an offset (None: from the start)."""
        ...

    def close(self) -> None: ...
