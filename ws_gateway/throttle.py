"""The read API's budget per organisation: what a request costs, and whether it may run now.

Every organisation (its token) has a token bucket of cost units and a cap on requests running at
once. A request that would overdraw the bucket, or go over the cap, is refused before it reads
anything: 429 with Retry-After. So one organisation asking for a year of hourly series from 16
connections spends its own budget, and another organisation's figures do not queue behind it.
Time is an argument: `admit` takes `now` (seconds, monotonic).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from core.changes import HOUR
from core.figures import OPEN_END
from ws_gateway.bucket import TokenBucket
from ws_gateway.limits import ApiLimits

YEAR_DAYS = 366
POINTS_PER_UNIT = 240  # series points (hours or days) one cost unit pays for, beyond the first unit
DAYS_PER_UNIT = 31  # days of records one cost unit pays for, beyond the first unit


def span_days(first: str, last: str) -> int:
    """Days from `first` to `last` inclusive; an open end counts as a year (records are kept about that long)."""
    if not first or last == OPEN_END:
        return YEAR_DAYS
    return (date.fromisoformat(last) - date.fromisoformat(first)).days + 1


def records_cost(first: str, last: str) -> int:
    """A list over the records of a period (orders, products, customers, carts): 1 + a unit a month."""
    return 1 + min(span_days(first, last), YEAR_DAYS) // DAYS_PER_UNIT


def series_cost(grain: str, first: str, last: str) -> int:
    """A series: 1 + a unit per 240 points. A year of hours costs 37, a month of days 1."""
    if not first or last == OPEN_END:
        return 1  # refused at once: a series needs both dates
    points = span_days(first, last) * (24 if grain == HOUR else 1)
    return 1 + points // POINTS_PER_UNIT


class Throttled(Exception):
    """Refused before it ran: answer 429 with Retry-After `retry_after` seconds."""

    def __init__(self, limit: str, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit  # "rate" or "concurrency"
        self.retry_after = retry_after
        self.message = message


@dataclass
class _Budget:
    bucket: TokenBucket
    running: int = 0


@dataclass
class ApiThrottle:
    limits: ApiLimits
    _budgets: dict[str, _Budget] = field(default_factory=dict)

    @contextmanager
    def admit(self, org: str, cost: int, now: float) -> Iterator[None]:
        """Runs the body as one of `org`'s requests, charged `cost` units; raises Throttled instead
        when `org` has its most requests running or too few units left (then nothing is charged).
        A request that costs more than the burst is charged the burst."""
        budget = self._budgets.get(org)
        if budget is None:
            budget = self._budgets[org] = _Budget(TokenBucket(self.limits.rate, self.limits.burst))
        if budget.running >= self.limits.concurrency:
            raise Throttled("concurrency", 1, (
                f"organisation {org!r} already has {budget.running} read API requests running, the most allowed "
                f"at once: retry when one has finished"))
        charge = min(cost, self.limits.burst)
        wait = budget.bucket.take(charge, now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise Throttled("rate", retry, (
                f"organisation {org!r} is over its read API rate limit: this request costs {charge:g} units "
                f"of the {self.limits.burst:g} it may spend at once, refilled at {self.limits.rate:g} a second; "
                f"retry in {retry} s"))
        budget.running += 1
        try:
            yield
        finally:
            budget.running -= 1
