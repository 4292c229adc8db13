"""Carts, journey, e-mail attribution and customer profiles of one organisation behind one object,
sharing its version. Pure.

The dataflow keeps one `Shoppers` per organisation next to its revenue ledger: every event goes to
`apply`, and whenever the organisation's watermark moves (max event time seen minus the allowed
lateness; while live also the wall clock minus lateness) it calls `advance`. Definitions are in
docs/carts_journey.md, docs/metrics.md (customers) and in the modules' docstrings.
"""

from __future__ import annotations

from core.changes import Record
from core.events import Event
from core.records import Value
from flows.attribution import Attribution
from flows.book import DEFAULT_KEEP_MS, MINUTE_MS, Version
from flows.carts import CartBook
from flows.email_engagement import EmailEngagement
from flows.journey import DEFAULT_IDENTIFY_FOR_MS, Journey
from flows.profiles import ProfileBook


class Shoppers:
    email: EmailEngagement | None = None  # None in what was pickled before the book existed: made on first use

    def __init__(self, org: str, timezone: str, abandon_after_minutes: int = 60, keep_ms: int = DEFAULT_KEEP_MS,
                 identify_for_ms: int = DEFAULT_IDENTIFY_FOR_MS, version: Version | None = None) -> None:
        self.version = version or Version()
        self.carts = CartBook(org, timezone, abandon_after_minutes * MINUTE_MS, keep_ms, self.version)
        self.journey = Journey(org, timezone, identify_for_ms, self.version, keep_ms)
        self.attribution = Attribution(org, timezone, keep_ms, self.version)
        self.profiles = ProfileBook(org, timezone, keep_ms, self.version)
        self.email = EmailEngagement(org, timezone, keep_ms, self.version)

    def _email(self) -> EmailEngagement:
        if self.email is None:
            a = self.attribution
            self.email = EmailEngagement(a.org, a.days.tz.key, a.keep, self.version)
        return self.email

    def apply(self, event: Event) -> list[Record[Value]]:
        """Folds one event into the five books; the records it changed, in version order."""
        return (self.carts.apply(event) + self.journey.apply(event) + self.attribution.apply(event)
                + self._email().apply(event) + self.profiles.apply(event))

    def apply_all(self, events: list[Event]) -> list[Record[Value]]:
        out: list[Record[Value]] = []
        for e in events:
            out += self.apply(e)
        return out

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward: abandonment decisions, final days, state dropped."""
        return (self.carts.advance(watermark_ms) + self.journey.advance(watermark_ms)
                + self.attribution.advance(watermark_ms) + self._email().advance(watermark_ms)
                + self.profiles.advance(watermark_ms))

    @property
    def too_late(self) -> int:
        return self.carts.too_late + self.journey.too_late + self.attribution.too_late

    def held(self) -> dict[str, int]:
        return {**{f"carts_{k}": v for k, v in self.carts.held().items()},
                **{f"journey_{k}": v for k, v in self.journey.held().items()},
                **{f"attribution_{k}": v for k, v in self.attribution.held().items()},
                **{f"email_{k}": v for k, v in self._email().held().items()},
                **{f"profiles_{k}": v for k, v in self.profiles.held().items()}}
