"""What an attempt's answer means and when to try again: pure, time in, no I/O.

The retry schedule is Standard Webhooks' (svix's): attempts now, then 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h and 24 h after the previous one, each delay stretched by up to 10 % of random jitter
(so receivers recovering from an outage are not hit by every retry at once), or a channel's own
`retry` list. Retry-After (429, 503) replaces the scheduled delay. After the last attempt: dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

# ms to wait after the 1st, 2nd, ... failed attempt: 10 attempts in all
STANDARD_RETRY: tuple[int, ...] = (5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000,
                                   72_000_000, 86_400_000)
JITTER = 0.10  # a delay is stretched by up to this fraction
MAX_RETRY_AFTER_MS = 86_400_000  # a Retry-After beyond a day is read as a day
TIMEOUT_S = 15.0  # one attempt's time limit (connect, send, answer)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # worth trying again (5xx, 408, 429, timeout, connection refused, SMTP 4xx)
    DEAD = "dead"  # permanent (other 4xx, a redirect, SMTP 5xx, a refused address)
    GONE = "gone"  # 410: the receiver is gone for good; the channel is disabled
    SUPPRESSED = "suppressed"  # every recipient is on the suppression list: not sent, cancelled


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    status: int | None  # HTTP status or SMTP reply code; None: no answer
    error: str = ""
    retry_after_ms: int | None = None  # the receiver's Retry-After, when it gave one


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """A Retry-After header (seconds, or an HTTP date) as ms from now; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value) * 1000, MAX_RETRY_AFTER_MS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, min(int(when.timestamp() * 1000) - now_ms, MAX_RETRY_AFTER_MS))


def http_outcome(status: int, retry_after: str | None, now_ms: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, status)
    if status in (429, 503):
        return Outcome(Verdict.RETRY, status, f"HTTP {status}", retry_after_ms(retry_after, now_ms))
    if status == 410:
        return Outcome(Verdict.GONE, status, "HTTP 410 Gone: the receiver says it is gone; the channel is disabled")
    if status >= 500 or status == 408:
        return Outcome(Verdict.RETRY, status, f"HTTP {status}")
    if 300 <= status < 400:
        return Outcome(Verdict.DEAD, status, f"HTTP {status}: redirects are not followed (point the channel at the final URL)")
    return Outcome(Verdict.DEAD, status, f"HTTP {status}: the receiver refused it (a 4xx is permanent)")


def smtp_outcome(code: int, message: str) -> Outcome:
    """An SMTP reply that ended the dialogue: 4xx transient, 5xx permanent."""
    if 400 <= code < 500:
        return Outcome(Verdict.RETRY, code, f"SMTP {code} {message}".strip())
    return Outcome(Verdict.DEAD, code, f"SMTP {code} {message}".strip())


def failed(error: str) -> Outcome:
    """No answer: timeout, connection refused or reset, a name that does not resolve."""
    return Outcome(Verdict.RETRY, None, error)


def delay_ms(tries: int, schedule: Sequence[int], jitter: float) -> int | None:
    """The wait after the `tries`-th failed attempt (1-based), stretched by `jitter` (0 to 1, drawn by
    the caller) times JITTER; None when the schedule is used up."""
    if tries > len(schedule):
        return None
    return int(schedule[tries - 1] * (1 + JITTER * jitter))


def next_try(outcome: Outcome, tries: int, schedule: Sequence[int], now_ms: int, jitter: float) -> int | None:
    """When to try again after a failed attempt (the `tries`-th), or None: it is dead."""
    wait = delay_ms(tries, schedule, jitter)
    if outcome.verdict != Verdict.RETRY or wait is None:
        return None
    if outcome.retry_after_ms is not None:
        wait = outcome.retry_after_ms
    return now_ms + wait
