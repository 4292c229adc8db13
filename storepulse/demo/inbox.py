"""The demo's own webhook receiver: where its automations' deliveries go, so that `storepulse up` shows
the notifier at work on a machine that reaches no Slack, no mail server and no CRM.

The demo config (storepulse/configfile.py) has a webhook channel `demo-inbox` to
`POST /demo/inbox` of the same server and an abandoned-cart automation sending to it. Each delivery
is verified as any receiver should (Standard Webhooks, the reference library, the channel's secret:
401 otherwise) and kept in memory, the newest INBOX_KEPT, one per `webhook-id` (a retry or replay
is a repeat, not a new message). `GET /demo/inbox` with the demo organisation's token lists them,
newest first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from web.responses import error_response, json_response

INBOX_KEPT = 200
PATH = "/demo/inbox"


class Inbox:
    """The deliveries received, by webhook-id, oldest first."""

    def __init__(self, secret: str, is_token: Callable[[str], bool]) -> None:
        self._webhook = Webhook(secret)
        self._is_token = is_token  # whether a bearer token is the demo organisation's
        self.received: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def take(self, headers: dict[str, str], body: bytes, now_ms: int) -> tuple[int, str]:
        """(status, problem) for one delivery; a verified one is kept."""
        try:
            self._webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            return 401, f"the webhook signature does not verify with the demo-inbox channel's secret: {exc}"
        delivery = headers.get("webhook-id", "")
        if delivery not in self.received:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return 400, f"the body is not JSON: {exc}"
            doc = doc if isinstance(doc, dict) else {}
            data: dict[str, Any] = doc["data"] if isinstance(doc.get("data"), dict) else {}
            self.received[delivery] = {
                "id": delivery, "received_at": now_ms, "type": doc.get("type"), "automation": doc.get("automation"),
                "subject": doc.get("subject"), "title": data.get("title"), "text": data.get("text")}
            while len(self.received) > INBOX_KEPT:
                self.received.popitem(last=False)
        return 204, ""

    def authorised(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and self._is_token(token)

    def routes(self) -> list[Route]:
        async def receive(request: Request) -> Response:
            status, problem = self.take({k.lower(): v for k, v in request.headers.items()}, await request.body(),
                                        int(time.time() * 1000))
            return error_response(status, problem) if problem else Response(status_code=status)

        async def listing(request: Request) -> Response:
            if not self.authorised(request.headers.get("authorization")):
                return error_response(401, "give the demo organisation's token: Authorization: Bearer <token>")
            return json_response({"deliveries": list(reversed(self.received.values()))})

        return [Route(PATH, receive, methods=["POST"]), Route(PATH, listing, methods=["GET"])]
