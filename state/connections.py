"""Per store connection: what monitoring shows (last event, events in the last hour) and sync state.

Counts are statistics, not figures: ingest processes add their per-minute counts in small batches
(see ingest/monitor.py), so a crash may lose a second of them, never an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoreActivity:
    store: str
    minute_counts: dict[int, int]  # minute (Unix seconds // 60) -> events appended
    last_event_time: int | None  # ms, the latest event time seen
    last_received_at: float | None  # Unix seconds


class ConnectionStats(Protocol):
    def record(self, activity: list[StoreActivity]) -> None:
        """Adds these counts and raises the last-seen times (never lowers them)."""
        ...

    def activity(self, store: str, since_minute: int) -> tuple[int, int | None, float | None]:
        """(events since that minute, last event time ms, last received at)."""
        ...

    def active_minutes(self, store: str, since_minute: int, until_minute: int) -> list[int]:
        """The minutes in [since, until] in which events of the store arrived, ascending (kept a day:
        what health checks read to learn a store's usual gap, core/health.py)."""
        ...

    def save_sync(self, store: str, state: dict[str, Any]) -> None: ...

    def load_sync(self, store: str) -> dict[str, Any] | None: ...

    def close(self) -> None: ...
