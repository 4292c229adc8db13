"""The event log interface: durable, partitioned by organisation, deduplicated by event id.

Writers (ingest) append asynchronously; readers (the dataflow's source) read one partition from an
offset, synchronously. Offsets are opaque strings that only increase within a partition.

"Seen" means one thing, the same on every backend: an event whose (org, id) was appended less than
DEDUPE_WINDOW_S ago is dropped, atomically with the append. Later, the same (org, id) may be
appended again. The window covers every redelivery there is (Stripe retries for 3 days, Shopify for
48 h, WooCommerce's and our own retries for less) and any overlap of a backfill with live traffic
that happens within a month. A backend may remember longer (SQLite's UNIQUE (org, id) remembers for
ever) but nothing may rely on it: the log's readers (flows/) fold an event appended again after the
window as the fact it already knows, and change no figure (each book says how; tests/test_seen.py
checks it). Why a window and not marks kept for ever: on Redis a mark kept for ever costs 49 to 112 B
of memory (hash buckets or keys), so at a million events a day the marks would grow by 18 to 41 GB a
year without end, where the window holds 4.6 GB, flat (bench/dedupe.py, docs/operations.md
"Duplicates: the 30-day window").
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from core.events import Event

DEFAULT_PARTITIONS = 4
# How long an appended (org, id) is surely remembered: 30 days (see the module docstring).
DEDUPE_WINDOW_S = 30 * 24 * 3600


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
        """Appends each event unless its (org, id) was appended within the last DEDUPE_WINDOW_S (or
        earlier in the same call); True where appended, False for a duplicate. Beyond the window the
        same (org, id) may be appended again (see the module docstring).

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
