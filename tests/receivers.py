"""Real receivers for the notifier's tests: an HTTP server verifying Standard Webhooks signatures with
the reference library (a stand-in for a customer's endpoint, or for Slack), and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import free_port


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the notifier opens up to 100 connections at once (the default backlog is 5)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


class Receiver:
    """An HTTP endpoint on 127.0.0.1. Answers `script` in order first (status, headers), then `status`.
    With a `secret`, a request whose signature does not verify is answered 401 and not counted.
    `hold` (an Event, set to release) makes it keep each request open before answering."""

    def __init__(self, secret: str | None = None, status: int = 200) -> None:
        self.secret = secret
        self.status = status
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[Received] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()  # set when a request has arrived (and, with hold, is held)
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the notifier's pooled client expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, extra = receiver.answer(dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                return 401, {}
        hold = self.hold
        self.arrived.set()
        if hold is not None:
            hold.wait(30)
        with self.lock:
            status, extra = self.script.pop(0) if self.script else (self.status, {})
            self.requests.append(Received({k.lower(): v for k, v in headers.items()}, body, status))
        return status, extra

    def delivered_ids(self) -> list[str]:
        """webhook-ids of the requests answered 2xx, in order (a receiver dedupes by these)."""
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests if 200 <= r.status < 300]

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers.get("webhook-id", "") for r in self.requests]

    def json_bodies(self) -> list[Any]:
        """The JSON bodies of the requests answered 2xx, in order."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests if 200 <= r.status < 300]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Mailbox:
    """What the SMTP server accepted, and how it answers RCPT TO for some addresses."""

    mails: list[EmailMessage] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply for its RCPT TO, every time
    refuse_once: dict[str, str] = field(default_factory=dict)  # address -> reply the first time only

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if address in self.refuse_once:
            return self.refuse_once.pop(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.mails.append(mail)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()

