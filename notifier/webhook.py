"""Signed webhooks (Standard Webhooks): the body, the headers, and one POST.

`webhook-id` is the delivery id (the same on every retry and replay: a receiver drops repeats),
`webhook-timestamp` the attempt's time, and `webhook-signature` is v1,<base64 HMAC-SHA256 of
id.timestamp.body> made by the `standardwebhooks` reference library with the channel's whsec_ secret.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from core.channels import Channel
from notifier.actions import filled
from notifier.outbox import Delivery
from notifier.schedule import Outcome, http_outcome


def body(d: Delivery) -> bytes:
    """The JSON payload: Standard Webhooks' {type, timestamp, data} and what the action is about.
    The same bytes on every attempt."""
    a = d.action
    return orjson.dumps({
        "type": a.trigger, "timestamp": datetime.fromtimestamp(a.fired_at / 1000, UTC).isoformat().replace("+00:00", "Z"),
        "data": filled(a).json, "automation": a.automation, "org": a.org, "subject": a.subject, "cause": a.cause,
    })


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def headers(secret: str, delivery: str, now_s: int, payload: bytes) -> dict[str, str]:
    signature = _signer(secret).sign(delivery, datetime.fromtimestamp(now_s, UTC), payload)
    return {"webhook-id": delivery, "webhook-timestamp": str(now_s), "webhook-signature": signature,
            "content-type": "application/json", "user-agent": "storepulse-notifier"}


async def post(client: aiohttp.ClientSession, channel: Channel, d: Delivery, now_ms: int) -> Outcome:
    assert channel.url is not None and channel.secret is not None  # core/channels.py requires both
    payload = body(d)
    sign = headers(channel.secret, d.id, now_ms // 1000, payload)
    async with client.post(channel.url, data=payload, headers=sign, allow_redirects=False) as response:
        return http_outcome(response.status, response.headers.get("retry-after"), now_ms)  # the body is not read
