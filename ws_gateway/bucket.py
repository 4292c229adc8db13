"""A token bucket: `rate` tokens a second, at most `burst` held. Time is an argument (seconds on any
monotonic clock), so the read API's per-organisation budget and the WebSocket's per-connection
message rate are tested without sleeping.

Not the `limits` package: it counts fixed or moving windows (no burst-then-rate bucket), reads
`time.time()` itself and keeps its keys in a storage object; here one bucket is a few floats held by
the organisation or connection it limits, and is gone with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens added a second
    burst: float  # tokens held at most, and at the start
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError(f"a token bucket needs a positive rate and burst, got {self.rate} and {self.burst}")
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, cost: float, now: float) -> float:
        """Takes `cost` tokens at `now` and returns 0.0; or takes none and returns the seconds until
        `cost` tokens will be there. A cost above the burst could never be met: a ValueError."""
        if cost > self.burst:
            raise ValueError(f"a cost of {cost} can never be met by a bucket of {self.burst}")
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if cost <= self.tokens:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate
