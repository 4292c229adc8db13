"""HTTP endpoints of the write side. Thin: read the raw body, call the vendor adapter, append.

We answer 2xx only once the events are durably in the log; a sender that gets anything else
retries, so nothing accepted is lost and nothing lost was acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.config import Config
from ingest import metrics, stripe
from ingest.errors import BadPayload, Rejected, TooLarge, UnknownStore
from state.log import EventLog, LogUnavailable

MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def ingest_routes(config: Config, log: EventLog, clock: Callable[[], float] = time.time) -> list[Route]:
    async def stripe_webhook(request: Request) -> Response:
        provider = "stripe"
        try:
            store_id = request.path_params["store_id"]
            store = config.store(store_id)
            if store is None or store.provider != provider:
                raise UnknownStore(f"no Stripe store {store_id!r} is configured")
            body = await read_body(request)
            stripe.verify(body, request.headers.get("stripe-signature"), store.secret, clock())
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadPayload(f"body is not JSON: {exc}") from None
            events = stripe.normalise(payload, store)
        except Rejected as exc:
            metrics.DELIVERIES.labels(provider, "rejected").inc()
            return _error(exc.status, exc.message)
        if not events:
            metrics.DELIVERIES.labels(provider, "ignored").inc()
            return JSONResponse({"status": "ignored", "reason": f"event type {payload.get('type')!r} is not used"})
        started = time.perf_counter()
        try:
            appended = await log.append(events)
        except LogUnavailable as exc:
            metrics.DELIVERIES.labels(provider, "unavailable").inc()
            return _error(503, f"{exc}; retry later")
        metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
        new = sum(appended)
        metrics.EVENTS.labels(provider).inc(new)
        outcome = "accepted" if new else "duplicate"
        metrics.DELIVERIES.labels(provider, outcome).inc()
        return JSONResponse({"status": outcome, "events": [e.id for e in events]})

    return [Route("/webhooks/stripe/{store_id}", stripe_webhook, methods=["POST"])]
