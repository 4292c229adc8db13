"""The delivery log, replays, channels and unsubscribe links over HTTP (docs/notifier.md, API).

The /api routes are OrgEndpoints that ws_gateway/api.py registers with `org_route` (the token's
organisation, its budget); they read the outbox through `app.state.deliveries`. The unsubscribe
routes are public: the link's HMAC token is the credential. Every error is {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from core.channels import Channel
from core.config import Config, Org
from notifier import unsubscribe
from notifier.outbox import Outbox, Status
from notifier.worker import Notifier, wall_ms
from web.responses import json_response

if TYPE_CHECKING:
    from ws_gateway.api import ReadSide

STATUSES = ", ".join(s.value for s in Status)


@dataclass
class DeliveriesSide:
    """What these routes read: the outbox, and a notifier for channel tests (made on first use)."""

    config: Config
    outbox: Outbox
    now: Callable[[], int] = wall_ms
    _notifier: Notifier | None = field(default=None, init=False)

    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self.config, self.outbox, clock=self.now)
        return self._notifier

    async def close(self) -> None:
        if self._notifier is not None:
            await self._notifier.close()


def _not_shared(request: Request) -> None:
    """A share link (a client portal) reads figures, not the delivery log: its payloads name customers."""
    if getattr(request.state, "share", None) is not None:
        raise HTTPException(403, "a share link does not give access to deliveries and channels")


def readable_outbox(request: Request) -> Outbox | None:
    """The delivery log, when this process has it open and the token is not a share link's (whose reader
    sees figures, not deliveries); None otherwise. For what shows deliveries beside something else."""
    side: DeliveriesSide | None = getattr(request.app.state, "deliveries", None)
    return None if side is None or getattr(request.state, "share", None) is not None else side.outbox


def _side(request: Request) -> DeliveriesSide:
    side: DeliveriesSide | None = getattr(request.app.state, "deliveries", None)
    if side is None:
        raise HTTPException(503, "the delivery log is not open in this process")
    return side


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 0 < int(raw) <= 1000:
        raise HTTPException(400, f"limit must be a whole number from 1 to 1000, got {raw!r}")
    return int(raw)


def _channel(org: Org, channel_id: str) -> Channel:
    channel = org.channels.get(channel_id)
    if channel is None:
        raise HTTPException(404, f"organisation {org.id!r} has no channel {channel_id!r}")
    return channel


async def list_deliveries(request: Request, side: ReadSide, org: Org) -> Response:
    _not_shared(request)
    q = request.query_params
    raw = q.get("status")
    if raw is not None and raw not in Status.__members__.values():
        raise HTTPException(400, f"status must be one of {STATUSES}, got {raw!r}")
    channel = q.get("channel")
    if channel is not None:
        _channel(org, channel)
    box = _side(request).outbox
    found = await asyncio.to_thread(box.list, org.id, status=Status(raw) if raw else None, automation=q.get("automation"),
                                    channel=channel, limit=_limit(request))
    return json_response({"org": org.id, "deliveries": [d.to_json() for d in found]})


async def one_delivery(request: Request, side: ReadSide, org: Org) -> Response:
    _not_shared(request)
    d = await asyncio.to_thread(_side(request).outbox.get, request.path_params["id"])
    if d is None or d.action.org != org.id:
        raise HTTPException(404, "no such delivery in this organisation")
    return json_response(d.to_json())


async def replay(request: Request, side: ReadSide, org: Org) -> Response:
    """Makes a dead, cancelled or delivered delivery pending again, due now, with the same id."""
    _not_shared(request)
    box, delivery = _side(request), request.path_params["id"]
    d = await asyncio.to_thread(box.outbox.get, delivery)
    if d is None or d.action.org != org.id:
        raise HTTPException(404, "no such delivery in this organisation")
    if d.status == Status.PENDING:
        raise HTTPException(409, "the delivery is pending already: it will be attempted at next_at")
    again = await asyncio.to_thread(box.outbox.replay, delivery, box.now())
    assert again is not None
    return json_response(again.to_json(), status=202)


def _shown(box: Outbox, org: Org) -> dict[str, dict[str, object]]:
    """Each channel as shown: no secrets; whether it is disabled and why; its dead deliveries."""
    off, dead = box.disabled_channels(org.id), box.dead_counts(org.id)
    return {c.id: {**c.public(off.get(c.id)), "dead": dead.get(c.id, 0)} for c in org.channels.values()}


async def channels(request: Request, side: ReadSide, org: Org) -> Response:
    _not_shared(request)
    shown = await asyncio.to_thread(_shown, _side(request).outbox, org)
    return json_response({"org": org.id, "channels": list(shown.values())})


async def one_channel(request: Request, side: ReadSide, org: Org) -> Response:
    _not_shared(request)
    channel = _channel(org, request.path_params["id"])
    return json_response((await asyncio.to_thread(_shown, _side(request).outbox, org))[channel.id])


async def test_channel(request: Request, side: ReadSide, org: Org) -> Response:
    """Sends a test message now; 200 when it was delivered (a disabled channel is enabled again), 502 when not.
    ?to=ADDRESS: for an e-mail channel with to = "customer", where the test goes."""
    _not_shared(request)
    channel = _channel(org, request.path_params["id"])
    attempt = await _side(request).notifier().test(channel, request.query_params.get("to"))
    ok = attempt.outcome == "delivered"
    return json_response({"channel": channel.id, "delivered": ok, "status": attempt.status,
                          "latency_ms": attempt.latency_ms, "error": attempt.error or None}, status=200 if ok else 502)


# --- unsubscribe links (no bearer token: the link's own HMAC) -------------------------------------

def _address(request: Request) -> tuple[Org, str, str]:
    side = _side(request)
    org = side.config.orgs.get(request.path_params["org"])
    address, token = request.query_params.get("a", ""), request.query_params.get("t", "")
    if org is None or not address or not unsubscribe.valid(org.token_sha256, org.id, address, token):
        raise HTTPException(400, "this unsubscribe link is not valid (it may be cut short, or older than a token change)")
    return org, address, token


async def unsubscribe_page(request: Request) -> Response:
    """GET: a page with a button (a link checker fetching the URL must not unsubscribe anyone)."""
    org, address, token = _address(request)
    page = (f"<!doctype html><title>Unsubscribe</title><form method=post>"
            f"<p>Stop e-mails from {html.escape(org.id)} to {html.escape(address)}?</p>"
            f"<button>Unsubscribe</button></form>")
    return HTMLResponse(page)


async def unsubscribe_post(request: Request) -> Response:
    """POST (the button, or a mail client's one-click List-Unsubscribe-Post): adds the address to the
    organisation's suppression list."""
    org, address, _ = _address(request)
    side = _side(request)
    await asyncio.to_thread(side.outbox.suppress, org.id, address, "unsubscribed", side.now())
    return HTMLResponse(f"<!doctype html><title>Unsubscribed</title><p>{html.escape(address)} will get no more e-mails "
                        f"from {html.escape(org.id)}.</p>")
