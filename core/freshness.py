"""Whether an organisation's figures are current: the read side's answer to a stalled dataflow. Pure.

The dataflow reports, about once a second while it has read the log to its end, that an
organisation's figures hold everything appended before a wall-clock time (`caught_up_at`,
flows/sources.py). When that report is older than STALE_AFTER_MS the figures are stale: the
dataflow is stopped, crash-looping, or still catching up with a backlog. They are stale since
`caught_up_at`: what was appended after it may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import utc_from_ms

STALE_AFTER_MS = 10_000  # ten missed reports: longer than a big epoch's snapshot pauses the dataflow


@dataclass(frozen=True, slots=True)
class Freshness:
    caught_up_at: int | None  # wall clock, ms; None: the dataflow never reported for this organisation
    stale: bool

    def to_json(self) -> dict[str, object]:
        at = None if self.caught_up_at is None else utc_from_ms(self.caught_up_at).isoformat(timespec="milliseconds")
        return {"live": not self.stale, "caught_up_at": at, "stale_since": at if self.stale else None}


def freshness(caught_up_at: int | None, now_ms: int, stale_after_ms: int = STALE_AFTER_MS) -> Freshness:
    return Freshness(caught_up_at, caught_up_at is None or now_ms - caught_up_at > stale_after_ms)
