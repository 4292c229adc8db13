"""What every vendor adapter is: one pure function from a delivery to canonical events.

    handle(delivery, store, now) -> Outcome

It verifies the signature on the raw bytes (constant-time), parses, and normalises; it raises a
`Rejected` subclass (ingest/errors.py) with a message for the sender when the delivery is bad.
`now` is the time to judge signature timestamps by: the wall clock for a live delivery, the time
it was first received for a redrive. Adapters never do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.events import Event


@dataclass(frozen=True, slots=True)
class Delivery:
    body: bytes
    headers: Mapping[str, str]  # lower-case names

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower-case and without its parameters; "" without one."""
    return (content_type or "").split(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Outcome:
    topic: str  # the vendor's topic or event type, for metrics
    events: list[Event] = field(default_factory=list)
    # Acknowledged but nothing to store (an unknown-but-valid topic, a ping): said in the 200 answer.
    ignored: str | None = None
