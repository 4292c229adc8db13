"""The plan quota: distinct paid orders in the rolling last 30 days, and alerts at 80 % and 100 %. Pure.

Judged in event time: "now" is the latest paid time seen, so a replay raises the same alerts as the
live stream did. An alert is raised once when the count reaches a threshold and re-armed when the
count falls below it again. Only the last 30 days of paid times are kept: older ones can never be
in the window again (bounded state).
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from dataclasses import dataclass, field

from core.records import QuotaAlert

WINDOW_MS = 30 * 24 * 3600 * 1000
THRESHOLDS = (80, 100)


@dataclass(slots=True)
class QuotaWindow:
    limit: int | None
    times: deque[int] = field(default_factory=deque)  # sorted paid times within the window
    latest: int = 0
    above: set[int] = field(default_factory=set)

    def __getstate__(self) -> tuple[int | None, bytes, int, list[int]]:
        # A busy shop has hundreds of thousands of paid times in the window: pickled as one buffer.
        return self.limit, array("q", self.times).tobytes(), self.latest, sorted(self.above)

    def __setstate__(self, state: tuple[int | None, bytes, int, list[int]]) -> None:
        times = array("q")
        times.frombytes(state[1])
        self.limit, self.times, self.latest, self.above = state[0], deque(times), state[2], set(state[3])

    def paid(self, time_ms: int) -> list[QuotaAlert]:
        """Counts one newly paid order; returns the alerts it raises."""
        if time_ms <= self.latest - WINDOW_MS:
            return []  # already out of the window: cannot change it
        if not self.times or time_ms >= self.times[-1]:
            self.times.append(time_ms)  # the usual case: O(1)
        else:
            bisect.insort(self.times, time_ms)  # a late order: O(window), rare
        self.latest = max(self.latest, time_ms)
        while self.times[0] <= self.latest - WINDOW_MS:
            self.times.popleft()
        if not self.limit:
            return []
        count = len(self.times)
        alerts = []
        for p in THRESHOLDS:
            reached = count * 100 >= self.limit * p
            if reached and p not in self.above:
                self.above.add(p)
                alerts.append(QuotaAlert(p, count, self.limit, self.latest))
            elif not reached:
                self.above.discard(p)
        return alerts
