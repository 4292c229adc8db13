"""E-mail engagement per campaign or automation and local day: who was sent one, who opened, who
clicked. Pure.

- An engagement is an `email.engaged` event (`name` "open" or "click") with a `campaign` (a campaign or
  an automation id; `source` says which) and a person: "c:<customer>", else "v:<visitor>"
  (flows/attribution.person_of).
- Per (store, local day of the event, campaign): `opened` = distinct persons with an open **or a
  click** that day (a click is an open whose tracking pixel was blocked), `clicked` = distinct persons
  with a click, `last` = the latest engagement time. A person engaging on two days counts on each
  (person-days, as the journey counts visitors): a period sums its days.
- A send is an `email.sent` event (events API `email_sent`) with a `campaign` and a person: `sent` =
  distinct persons sent one that day, `last_sent` = the latest send. Sends and engagement are counted
  on their own days (an e-mail sent on Monday and opened on Tuesday counts on each).

Records (absolute, each with a new organisation version): "email_day", key "<store>|<day>|<campaign>",
day = the events' local day: {store, campaign, type ("campaign"/"automation"), opened, clicked, last,
sent, last_sent} (`last`, `last_sent`: 0 for none).

State bound (W = watermark from the caller, `keep` as the other books): a day's persons are held until
the day ended before W - keep; an engagement older than W - keep is not counted (it may still be an
order's touch: the attribution book keeps touches 7 days longer, and counts its own too-late ones).
"""

from __future__ import annotations

import heapq

from core.changes import Record
from core.events import Event, Kind, Source
from core.records import EmailDay, RecordKind, Value
from flows.attribution import person_of
from flows.book import DEFAULT_KEEP_MS, Days, Version

Key = tuple[str, str, str]  # (store, day, campaign)


class _Day:
    __slots__ = ("type", "opened", "clicked", "last", "sent", "last_sent")

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.opened: set[str] = set()
        self.clicked: set[str] = set()
        self.last = 0
        self.sent: set[str] = set()
        self.last_sent = 0

    def counts(self) -> tuple[int, int, int, int, int]:
        return (len(self.opened), len(self.clicked), self.last, len(self.sent), self.last_sent)

    def __getstate__(self) -> tuple[str, set[str], set[str], int, set[str], int]:
        return (self.type, self.opened, self.clicked, self.last, self.sent, self.last_sent)

    def __setstate__(self, state: tuple[str, set[str], set[str], int, set[str], int]) -> None:
        self.type, self.opened, self.clicked, self.last, self.sent, self.last_sent = state


class EmailEngagement:
    """E-mail engagement of one organisation: `apply(event)`, `advance(watermark_ms)`."""

    def __init__(self, org: str, timezone: str, keep_ms: int = DEFAULT_KEEP_MS, version: Version | None = None) -> None:
        self.org = org
        self.days_of = Days(timezone)
        self.keep = keep_ms
        self.version = version or Version()
        self.watermark: int | None = None
        self.days: dict[Key, _Day] = {}
        self._by_end: list[tuple[int, str, str, str]] = []

    def apply(self, event: Event) -> list[Record[Value]]:
        if event.kind not in (Kind.EMAIL_ENGAGED, Kind.EMAIL_SENT) or not event.campaign:
            return []
        person = person_of(event)
        if person is None:
            return []
        if self.watermark is not None and event.time < self.watermark - self.keep:
            return []  # its day may be dropped already: counting it would start that day again from zero
        day = self.days_of.of(event.time)
        key = (event.store, day, event.campaign)
        d = self.days.get(key)
        if d is None:
            d = self.days[key] = _Day("automation" if event.source is Source.AUTOMATION else "campaign")
            heapq.heappush(self._by_end, (self.days_of.end(day), *key))
        before = d.counts()
        if event.kind is Kind.EMAIL_SENT:
            d.sent.add(person)
            d.last_sent = max(d.last_sent, event.time)
        else:
            d.opened.add(person)
            if event.name == "click":
                d.clicked.add(person)
            d.last = max(d.last, event.time)
        if d.counts() == before:
            return []  # a redelivery, or the same person again that day before the latest time
        return [Record(self.org, self.version.next(), RecordKind.EMAIL_DAY, "|".join(key), day,
                       EmailDay(event.store, event.campaign, d.type, opened=len(d.opened), clicked=len(d.clicked),
                                last=d.last, sent=len(d.sent), last_sent=d.last_sent))]

    def apply_all(self, events: list[Event]) -> list[Record[Value]]:
        out: list[Record[Value]] = []
        for e in events:
            out += self.apply(e)
        return out

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward and drops the days no on-time engagement can reach (emits nothing)."""
        if self.watermark is not None and watermark_ms <= self.watermark:
            return []
        self.watermark = watermark_ms
        while self._by_end and self._by_end[0][0] <= watermark_ms - self.keep:
            _, store, day, campaign = heapq.heappop(self._by_end)
            self.days.pop((store, day, campaign), None)
        return []

    def held(self) -> dict[str, int]:
        return {"days": len(self.days), "persons": sum(len(d.opened) + len(d.sent) for d in self.days.values())}
