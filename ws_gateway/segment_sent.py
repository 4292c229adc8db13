"""Which segment changes a gateway has sent, so that it retracts exactly those the dataflow withdraws
(docs/segments.md, "WebSocket"). Pure: no clock, no I/O.

The dataflow withdraws a change (writes its key again, `superseded`) when an out-of-order event
within the allowed lateness shows it did not happen. A client that counted the change must undo it,
and only such a client: a change entered and withdrawn within one batch of the dataflow reaches the
feed only as superseded (the batch keeps a key's last record), and one sent before a client
subscribed is not in what it counted from. So the hub numbers what it sends (`seq`, per organisation)
and each subscriber remembers the number it subscribed at; a withdrawal goes to the subscribers that
were there when the change went out.

Bounded: a change can only be withdrawn while its instant is after the watermark, and the watermark
is at least the latest instant of any change minus the allowed lateness. So a sent change more than
the lateness older than the newest one seen can never be withdrawn, and is forgotten.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

MOST = 200_000  # changes remembered per organisation at most (the oldest go first): a guard, not the bound


@dataclass
class SentChanges:
    lateness_ms: int
    most: int = MOST
    seq: int = 0  # changes sent so far
    _sent: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (seq, at)
    _by_at: list[tuple[int, str]] = field(default_factory=list)  # heap of (at, key), possibly stale
    _newest: int | None = None

    def sent(self, key: str, at: int) -> int:
        """A change went out now: its number."""
        self.seq += 1
        self._sent[key] = (self.seq, at)
        heapq.heappush(self._by_at, (at, key))
        if self._newest is None or at > self._newest:
            self._newest = at
        self._prune()
        return self.seq

    def withdrawn(self, key: str) -> int | None:
        """The number a withdrawn change went out with, or None if this gateway never sent it."""
        found = self._sent.pop(key, None)
        return None if found is None else found[0]

    def __len__(self) -> int:
        return len(self._sent)

    def _prune(self) -> None:
        assert self._newest is not None
        edge = self._newest - self.lateness_ms
        while self._by_at and (self._by_at[0][0] < edge or len(self._by_at) > self.most):
            at, key = heapq.heappop(self._by_at)
            held = self._sent.get(key)
            if held is not None and held[1] == at:
                del self._sent[key]
