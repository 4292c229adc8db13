"""Slack incoming webhooks: at most about one message a second per channel (Slack's limit).

Deliveries to one channel claimed together are coalesced into one message ("12 × big-order …")
instead of being rate-limited one by one; `Gate` spaces a channel's messages by the interval.
Slack has no idempotency key: docs/notifier.md says in which window a crash can repeat a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aiohttp
import orjson

from core.channels import Channel
from notifier.actions import filled
from notifier.outbox import Delivery
from notifier.schedule import Outcome, http_outcome

INTERVAL_MS = 1000  # Slack: "1 message per second per webhook, short bursts allowed"
SHOWN = 10  # lines of a coalesced message; the rest are counted


def text(deliveries: Sequence[Delivery]) -> str:
    """One Slack message for `deliveries` (oldest first): one delivery's own text, or a summary of
    each automation's count with the first SHOWN texts."""
    if len(deliveries) == 1:
        return filled(deliveries[0].action).slack_text
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d.action.automation] = counts.get(d.action.automation, 0) + 1
    head = ", ".join(f"*{n} × {automation}*" for automation, n in counts.items())
    lines = [f"• {filled(d.action).slack_text}" for d in deliveries[:SHOWN]]
    more = len(deliveries) - SHOWN
    return "\n".join([head, *lines, *([f"… and {more} more"] if more > 0 else [])])


async def post(client: aiohttp.ClientSession, channel: Channel, deliveries: Sequence[Delivery], now_ms: int) -> Outcome:
    assert channel.url is not None  # core/channels.py requires it
    async with client.post(channel.url, data=orjson.dumps({"text": text(deliveries)}), allow_redirects=False,
                           headers={"content-type": "application/json"}) as response:
        return http_outcome(response.status, response.headers.get("retry-after"), now_ms)


class Gate:
    """Spaces the messages to each channel by INTERVAL_MS (within this process)."""

    def __init__(self, monotonic_ms: Callable[[], float], interval_ms: int = INTERVAL_MS) -> None:
        self._now = monotonic_ms
        self._interval = interval_ms
        self._next: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, channel: Channel) -> asyncio.Lock:
        return self._locks.setdefault((channel.org, channel.id), asyncio.Lock())

    def delay_ms(self, channel: Channel) -> float:
        """How long until `channel` may get its next message."""
        return max(0.0, self._next.get((channel.org, channel.id), 0.0) - self._now())

    async def wait(self, channel: Channel) -> None:
        """Returns when `channel` may get its next message (call under its lock), and books the slot."""
        key = (channel.org, channel.id)
        wait = self._next.get(key, 0.0) - self._now()
        if wait > 0:
            await asyncio.sleep(wait / 1000)
        self._next[key] = self._now() + self._interval

    def hold(self, channel: Channel, ms: int) -> None:
        """No message to `channel` for `ms` (Slack answered 429 with Retry-After)."""
        key = (channel.org, channel.id)
        self._next[key] = max(self._next.get(key, 0.0), self._now() + ms)
