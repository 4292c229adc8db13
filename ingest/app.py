"""HTTP endpoints of the write side. Thin: read the raw body, call the vendor adapter, append.

We answer 2xx only once the events are durably in the log; a sender that gets anything else
retries, so nothing accepted is lost and nothing lost was acknowledged. A refused delivery is kept
(body, redacted headers, reason) in the rejected store for inspection and redrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from core.config import Config, Store
from ingest import metrics, shopify, stripe, woocommerce
from ingest.adapter import Delivery, Outcome, media_type
from ingest.admit import append_admitted
from ingest.errors import Rejected, SlowBody, TooLarge, UnknownStore, UnsupportedMediaType
from ingest.events_api import parse_batch, store_for_key
from ingest.monitor import ConnectionMonitor
from ingest.redaction import redact
from state.log import EventLog, LogUnavailable
from state.rejected import RejectedDelivery, RejectedStore
from web.responses import error_response, json_response

MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_SECONDS = 30.0
EVENTS_PATH = "/v1/events"
_ACCEPTED_MEDIA = ("application/json", "application/x-www-form-urlencoded", "")

log = logging.getLogger("storepulse.ingest")

Adapter = Callable[[Delivery, Store, float], Outcome]

# The vendors that post webhooks, each to its adapter (ingest/adapter.py). The other provider of
# core.config.PROVIDERS, "events", is the events API (ingest/events_api.py).
ADAPTERS: Mapping[str, Adapter] = {"stripe": stripe.handle, "woocommerce": woocommerce.handle, "shopify": shopify.handle}


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes, within `timeout` seconds (a body that trickles in or
    stalls would hold the connection and its buffer for as long as the sender likes)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    try:
        async with asyncio.timeout(timeout):
            if declared and declared.isdigit():
                return await request.body()  # the server stops at Content-Length: the limit holds
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise SlowBody(f"the body did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise SlowBody("the sender closed the connection before the body ended") from None


@dataclass
class Ingest:
    """The append path shared by webhooks, the events API and redrive."""

    config: Config
    log: EventLog
    rejected: RejectedStore
    monitor: ConnectionMonitor
    clock: Callable[[], float] = time.time
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS

    async def reject(self, exc: Rejected, provider: str, store_id: str, store: Store | None,
                     headers: Mapping[str, str], body: bytes, received_at: float) -> Response:
        metrics.delivered(provider, "rejected")
        record = RejectedDelivery(
            id=uuid.uuid4().hex, received_at=received_at, provider=provider, store=store_id,
            org=store.org if store else None, status=exc.status, reason=exc.message, headers=redact(headers),
            body=body,
        )
        try:
            evicted = await asyncio.to_thread(self.rejected.add, record)
        except Exception:  # keeping the evidence failed; the sender still deserves the real answer
            log.exception("could not keep rejected delivery %s", record.id)
        else:
            metrics.REJECTED_DROPPED.inc(evicted.count)
            metrics.REJECTED_DROPPED_BYTES.inc(evicted.bytes)
        response = error_response(exc.status, exc.message)
        if isinstance(exc, SlowBody):  # the rest of the body may still come: not a request's start
            response.headers["connection"] = "close"
        return response

    async def append(self, provider: str, outcome: Outcome, received_at: float, list_ids: bool = True) -> Response:
        """Appends a delivery's events and answers; raises Rejected (for the caller to keep and answer)
        when an event is outside core.limits or cannot be stored."""
        if not outcome.events:
            metrics.delivered(provider, "ignored")
            metrics.ignored(provider, outcome.topic)
            return json_response({"status": "ignored", "reason": outcome.ignored or "nothing to record"})
        started = time.perf_counter()
        try:
            appended = await append_admitted(self.log, outcome.events)
        except LogUnavailable as exc:
            metrics.delivered(provider, "unavailable")
            return error_response(503, f"{exc}; retry later")
        metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
        self.monitor.appended(outcome.events, appended, received_at)
        new = sum(appended)
        outcome_name = "accepted" if new else "duplicate"
        metrics.delivered(provider, outcome_name, new)
        body: dict[str, object] = {"status": outcome_name, "new": new, "duplicates": len(appended) - new}
        if list_ids:
            body["events"] = [e.id for e in outcome.events]
        return json_response(body)

    async def redrive(self, r: RejectedDelivery) -> str:
        """Runs a kept delivery through verification and normalisation again, with today's config.

        Signature timestamps are judged by when it first arrived: we did receive it then.
        """
        store = self.config.store(r.store)
        try:
            if store is None:
                raise UnknownStore(f"no store {r.store!r} is configured")
            if r.provider != store.provider:
                raise UnknownStore(f"store {r.store!r} is a {store.provider} connection, not {r.provider}")
            if r.body_cut:
                raise TooLarge(f"only the first {len(r.body)} of its {len(r.body) + r.body_cut} bytes were kept")
            if r.provider == "events":
                outcome = parse_batch(r.body, store)
            else:
                outcome = ADAPTERS[r.provider](Delivery(r.body, r.headers), store, r.received_at)
            appended = await append_admitted(self.log, outcome.events) if outcome.events else []
        except Rejected as exc:
            result = f"still rejected ({exc.status}): {exc.message}"
        else:
            self.monitor.appended(outcome.events, appended, self.clock())
            result = f"redriven: {sum(appended)} new, {len(appended) - sum(appended)} duplicate event(s)"
            if outcome.ignored:
                result = f"redriven: {outcome.ignored}"
        await asyncio.to_thread(self.rejected.mark_redriven, r.id, self.clock(), result)
        return result


def ingest_routes(ingest: Ingest) -> list[Route]:
    async def webhook(request: Request) -> Response:
        provider, store_id = request.path_params["provider"], request.path_params["store_id"]
        received_at = ingest.clock()
        headers = {k.lower(): v for k, v in request.headers.items()}
        store = ingest.config.store(store_id)
        body = b""
        try:
            if provider not in ADAPTERS:
                raise UnknownStore(f"unknown provider {provider!r}: use one of {', '.join(ADAPTERS)}")
            if store is None:
                raise UnknownStore(f"no store {store_id!r} is configured")
            if store.provider != provider:
                raise UnknownStore(
                    f"store {store_id!r} is a {store.provider} connection: post to /webhooks/{store.provider}/{store_id}"
                )
            media = media_type(headers.get("content-type"))
            if media not in _ACCEPTED_MEDIA:
                raise UnsupportedMediaType(f"Content-Type {media!r} is not accepted: send application/json")
            body = await read_body(request, ingest.max_body, ingest.body_timeout)
            outcome = ADAPTERS[provider](Delivery(body, headers), store, received_at)
            return await ingest.append(provider, outcome, received_at)
        except Rejected as exc:
            return await ingest.reject(exc, provider, store_id, store, headers, body, received_at)

    async def events(request: Request) -> Response:
        received_at = ingest.clock()
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else headers.get("x-storepulse-key")
        store: Store | None = None
        body = b""
        try:
            store = store_for_key(ingest.config, key)
            media = media_type(headers.get("content-type"))
            if media not in ("application/json", ""):
                raise UnsupportedMediaType(f"Content-Type {media!r} is not accepted: send application/json")
            body = await read_body(request, ingest.max_body, ingest.body_timeout)
            outcome = parse_batch(body, store)
            return await ingest.append("events", outcome, received_at, list_ids=len(outcome.events) <= 10)
        except Rejected as exc:
            store_id = store.id if store else "(no valid key)"
            return await ingest.reject(exc, "events", store_id, store, headers, body, received_at)

    return [
        Route("/webhooks/{provider}/{store_id}", webhook, methods=["POST"]),
        Route(EVENTS_PATH, events, methods=["POST"]),
    ]
