"""Everything the dataflow keeps for one organisation: the revenue ledger and the shoppers' books
(carts, journey, attribution), fed the same events, versioned by one count. Pure.

Versions: after a batch, everything the batch changed carries the number of events folded so far
(see flows/revenue.py); each key is emitted once per batch with its final value, so the value at a
version does not depend on how the events were batched. The watermark is event time only (the
latest event time minus ALLOWED_LATENESS), so decisions replay the same way after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Org
from core.events import Event
from core.figures import Bucket, Record
from flows.book import Version
from flows.revenue import RevenueLedger
from flows.shoppers import Shoppers

ALLOWED_LATENESS_MS = 5 * 60 * 1000


class BatchVersion(Version):
    """Every record of a batch gets the batch's version."""

    def next(self) -> int:
        return self.value


@dataclass
class Organisation:
    ledger: RevenueLedger
    shoppers: Shoppers
    latest: int = 0  # the latest event time seen, ms
    _version: BatchVersion = field(default_factory=BatchVersion)

    @classmethod
    def new(cls, org: Org) -> Organisation:
        version = BatchVersion()
        return cls(RevenueLedger(org.id, org.timezone, org.plan_limit),
                   Shoppers(org.id, org.timezone, org.abandon_after_minutes, version=version), 0, version)

    @property
    def watermark(self) -> int:
        return self.latest - ALLOWED_LATENESS_MS

    def apply_all(self, events: list[Event]) -> list[Bucket | Record]:
        out: list[Bucket | Record] = self.ledger.apply_all(events)
        self._version.value = self.ledger.version
        last: dict[tuple[str, str], Record] = {}
        for e in events:
            self.latest = max(self.latest, e.time)
            for r in self.shoppers.apply(e) + self.shoppers.advance(self.watermark):
                last[(r.kind, r.key)] = r
        out.extend(last.values())
        return out
