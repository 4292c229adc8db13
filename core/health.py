"""Pipeline health: the problems no hosted suite tells a shop owner about, as pure checks. Time comes in.

- a store silent for much longer than its usual gap between events (a broken webhook, a plugin
  switched off): usual = the 95th percentile of the gaps between its active minutes over the last day;
  silent when nothing arrived for SILENCE_FACTOR times that, and at least SILENCE_FLOOR_S;
- a burst of rejected deliveries from one store (a rotated signing secret rejects every webhook);
- the event log unavailable (ingest answers 503: vendors retry, but not for ever);
- a disabled channel (its receiver answered 410 Gone) and dead letters piling up on a channel.

`Incidents` turns the problems found at each check into openings and resolutions, so that a problem
alerts once when it starts and once when it ends, not at every check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

SILENCE_FACTOR = 4
SILENCE_FLOOR_S = 30 * 60
MIN_ACTIVE_MINUTES = 12  # fewer active minutes in the last day: too little to know a usual gap
REJECTED_WINDOW_S = 10 * 60
REJECTED_BURST = 10  # rejected deliveries of one store within REJECTED_WINDOW_S
DEAD_LETTERS = 10  # dead deliveries on one channel not yet replayed


class Check(StrEnum):
    STORE_SILENT = "store_silent"
    DELIVERIES_REJECTED = "deliveries_rejected"
    LOG_UNAVAILABLE = "log_unavailable"
    CHANNEL_DISABLED = "channel_disabled"
    DEAD_LETTERS = "dead_letters"


@dataclass(frozen=True, slots=True)
class Problem:
    check: Check
    subject: str  # the store or channel concerned; "" for the log
    detail: tuple[tuple[str, int | str], ...] = ()  # what an alert says: seconds, counts, a reason

    @property
    def key(self) -> tuple[Check, str]:
        return self.check, self.subject


def usual_gap_s(active_minutes: Sequence[int]) -> int | None:
    """The 95th percentile (nearest rank) of the gaps between consecutive active minutes, in seconds;
    None with fewer than MIN_ACTIVE_MINUTES of them."""
    minutes = sorted(set(active_minutes))
    if len(minutes) < MIN_ACTIVE_MINUTES:
        return None
    gaps = sorted(b - a for a, b in zip(minutes, minutes[1:], strict=False))
    rank = -(-95 * len(gaps) // 100)  # ceil(0.95 n): the nearest-rank percentile
    return gaps[rank - 1] * 60


def store_silent(store: str, active_minutes: Sequence[int], last_received_s: float | None, now_s: float) -> Problem | None:
    """The store is silent for much longer than usual (nothing said for a store without a usual gap yet)."""
    usual = usual_gap_s(active_minutes)
    if usual is None or last_received_s is None:
        return None
    silent = int(now_s - last_received_s)
    limit = max(SILENCE_FLOOR_S, SILENCE_FACTOR * usual)
    if silent < limit:
        return None
    return Problem(Check.STORE_SILENT, store, (("silent_s", silent), ("usual_gap_s", usual)))


def rejected_burst(store: str, rejected: Iterable[tuple[float, str]], now_s: float) -> Problem | None:
    """REJECTED_BURST or more deliveries of the store rejected in the last REJECTED_WINDOW_S ((time s, reason)
    pairs); the alert names the most frequent reason ("signature mismatch" after a rotated secret)."""
    reasons: dict[str, int] = {}
    for at, reason in rejected:
        if now_s - REJECTED_WINDOW_S < at <= now_s:
            reasons[reason] = reasons.get(reason, 0) + 1
    count = sum(reasons.values())
    if count < REJECTED_BURST:
        return None
    top = min(reasons, key=lambda r: (-reasons[r], r))
    return Problem(Check.DELIVERIES_REJECTED, store, (("count", count), ("reason", top)))


def log_unavailable(failed_since_s: float | None, now_s: float) -> Problem | None:
    """The log refused appends since that time (None: it is fine)."""
    if failed_since_s is None:
        return None
    return Problem(Check.LOG_UNAVAILABLE, "", (("for_s", int(now_s - failed_since_s)),))


def channel_problems(channel: str, disabled: str | None, dead: int) -> list[Problem]:
    """A channel disabled (the reason, e.g. "410 Gone from the receiver") or with DEAD_LETTERS or more dead."""
    out = []
    if disabled is not None:
        out.append(Problem(Check.CHANNEL_DISABLED, channel, (("reason", disabled),)))
    if dead >= DEAD_LETTERS:
        out.append(Problem(Check.DEAD_LETTERS, channel, (("dead", dead),)))
    return out


@dataclass
class Incidents:
    """Open problems by (check, subject), with when each opened: each problem alerts when it opens and
    when it resolves, never at every check."""

    open: dict[tuple[Check, str], tuple[Problem, float]] = field(default_factory=dict)

    def update(self, found: Iterable[Problem], now_s: float) -> tuple[list[Problem], list[tuple[Problem, float]]]:
        """(problems that opened now, (problems resolved now, when each had opened))."""
        current = {p.key: p for p in found}
        opened = [p for k, p in sorted(current.items()) if k not in self.open]
        resolved = [self.open.pop(k) for k in sorted(self.open) if k not in current]
        for p in opened:
            self.open[p.key] = (p, now_s)
        for k, p in current.items():  # keep the latest detail (silent for longer) with the opening time
            self.open[k] = (p, self.open[k][1])
        return opened, resolved
