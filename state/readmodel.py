"""The read model interface: figures' day totals per organisation, versioned, with a change feed.

The dataflow's sink writes absolute values with versions; a write whose version is not newer than
what is stored is a replay (outputs are at-least-once) and changes nothing. Every applied write is
published on the change feed, which the gateway follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from core.figures import DayTotals


class ReadModel(Protocol):
    def write(self, changes: Sequence[DayTotals]) -> None:
        """Applies the changes newer than what is stored, in order, and publishes each applied one."""
        ...

    def snapshot(self, org: str) -> tuple[int, list[DayTotals]]:
        """The organisation's current version and all its day totals, consistent with each other."""
        ...

    def feed(self) -> AsyncIterator[DayTotals | None]:
        """Every change applied from now on, for all organisations, in version order per organisation.

        The first item is None, yielded once the feed is live: a snapshot read after it misses nothing.
        """
        ...

    def close(self) -> None: ...
