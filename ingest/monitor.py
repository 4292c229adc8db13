"""Counts what each store connection sends, in memory, and flushes it to the stats store every second.

Counting per request in the store would put a write on every webhook's path; a second's batch
costs one write for thousands of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from itertools import compress
from operator import attrgetter

from core.events import Event
from state.connections import ConnectionStats, StoreActivity

FLUSH_SECONDS = 1.0
log = logging.getLogger("storepulse.ingest")
_store, _time = attrgetter("store"), attrgetter("time")


class ConnectionMonitor:
    def __init__(self, stats: ConnectionStats) -> None:
        self._stats = stats
        self._counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._last_event: dict[str, int] = {}
        self._last_received: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def appended(self, events: Sequence[Event], appended: Sequence[bool], received_at: float) -> None:
        # Per store, not per event: a batch of 1,000 is one store's, and the loops below run in C.
        new = list(compress(events, appended))
        if not new:
            return
        stores = set(map(_store, new))
        groups = [(stores.pop(), new)] if len(stores) == 1 else [(s, [e for e in new if e.store == s]) for s in stores]
        minute = int(received_at // 60)
        for store, group in groups:
            self._counts[store][minute] += len(group)
            latest = max(map(_time, group))
            self._last_event[store] = max(self._last_event.get(store, latest), latest)
            self._last_received[store] = received_at

    def take(self) -> list[StoreActivity]:
        stores = set(self._counts) | set(self._last_event)
        out = [
            StoreActivity(s, dict(self._counts.get(s, {})), self._last_event.get(s), self._last_received.get(s))
            for s in stores
        ]
        self._counts.clear()
        self._last_event.clear()
        self._last_received.clear()
        return out

    async def flush(self) -> None:
        batch = self.take()
        if batch:
            await asyncio.to_thread(self._stats.record, batch)

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self.flush()
                except Exception:  # statistics must never take ingest down
                    log.exception("could not write connection statistics")

        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
