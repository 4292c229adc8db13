"""The read model interface: figures' buckets per organisation, versioned, with a change feed.

The dataflow's sink writes absolute values with versions; a write whose version is not newer than
what is stored for that key is a replay (outputs are at-least-once) and changes nothing. Every
applied write is published on the change feed, which the gateway follows. Versions grow per
organisation but are not consecutive: one batch's changes share one. Publishing a batch as one
message costs one message per dataflow batch, not one per change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeVar

from core.changes import Bucket, Change, Record
from core.figures import OPEN_END
from core.records import Value

V = TypeVar("V", bound=Value)


class ReadModel(Protocol):
    def write(self, changes: Sequence[Change]) -> None:
        """Applies the changes newer than what is stored, in order, and publishes the applied ones:
        one feed message per organisation per write, atomically with the values."""
        ...

    def caught_up(self, at: dict[str, int]) -> None:
        """Records, per organisation, that its figures hold everything appended to the log before
        `at` (wall clock, ms): the dataflow's heartbeat, by which the read side tells stale figures."""
        ...

    def caught_up_at(self, org: str) -> int | None:
        """The latest such time of an organisation (None: never)."""
        ...

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        """The organisation's current version and its buckets (of one grain, if given), consistent."""
        ...

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        """The organisation's records of a kind (its value class: `records(org, Order)`) whose day is in
        [first, last]."""
        ...

    def feed(self) -> AsyncIterator[list[Change] | None]:
        """Every change applied from now on, for all organisations, in version order per organisation,
        as the batches they were written in (one organisation each): a follower applies a batch whole,
        so it never shows half of what one version changed.

        The first item is None, yielded once the feed is live: a snapshot read after it misses nothing.
        A feed that cannot go on without skipping changes raises instead (the SQLite feed's FeedGap, when
        the follower fell behind its retention: state/feed_retention.py); the follower then opens a new
        feed and re-reads its snapshot, as when the feed breaks.
        """
        ...

    def close(self) -> None: ...
