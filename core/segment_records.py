"""The change-feed records of customer segments (flows/membership.py builds them; docs/segments.md,
"API and change feed"). Registered in core/records.py like every kind.

Keys and days are chosen so that the read models' (kind, day range) selection serves each query:

    segment         key <segment>                          day ""
    segment_clock   key ""                                 day ""
    segment_member  key <segment>|<customer>               day <segment>
    segment_change  key <segment>|<customer>|<at>|<change> day <segment>|<at, ISO 8601 UTC, ms>

A change is stored under a key made of what it is, so a re-emission after a crash overwrites the
same entry: no change is stored twice.
"""

from __future__ import annotations

from msgspec import Raw

from core.records import RecordKind, Value


class Segment(Value, frozen=True):
    """A segment's definition and its member count (exact as of the segment clock's `as_of`)."""

    KIND = RecordKind.SEGMENT
    id: str
    name: str
    predefined: bool
    rule: Raw  # JSON, as defined
    members: int
    deleted: bool = False
    subject: str = "customer"  # or "product": its members are products


class SegmentClock(Value, frozen=True):
    """The instant (ms, the watermark) every segment's membership is exact for."""

    KIND = RecordKind.SEGMENT_CLOCK
    as_of: int | None


class SegmentMember(Value, frozen=True):
    """Whether a customer is a member of a segment now; `entered` the instant of the latest entry."""

    KIND = RecordKind.SEGMENT_MEMBER
    segment: str
    customer: str
    member: bool
    entered: int | None


class SegmentChange(Value, frozen=True):
    """One entry or exit: `at` its instant (ms), `cause` the event id, "time" or "defined".
    `superseded`: an event that arrived out of order showed it did not happen (readers skip it)."""

    KIND = RecordKind.SEGMENT_CHANGE
    segment: str
    customer: str
    change: str  # "entered" | "exited"
    at: int
    cause: str
    superseded: bool = False
