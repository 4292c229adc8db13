"""What the WebSocket server allows its clients, without any I/O: how many connections it holds (per
organisation and in total), and what it answers to a client's message once authenticated."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from ws_gateway.limits import WsLimits

MAX_REASON_BYTES = 123  # a close frame's reason (RFC 6455, 5.5: 125 bytes of payload, 2 of them the code)


def close_reason(text: str) -> str:
    """`text` cut to what fits a close frame, on a character boundary."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


@dataclass
class ConnectionCaps:
    """Connections held, in total (from the handshake on) and per organisation (once authenticated).
    `open` and `join` return None when the connection may stay, else why it may not."""

    limits: WsLimits
    total: int = 0
    by_org: Counter[str] = field(default_factory=Counter)

    def open(self) -> str | None:
        if self.total >= self.limits.total:
            return close_reason(f"the server holds {self.total} WebSocket connections, its most: retry later")
        self.total += 1
        return None

    def close(self) -> None:
        self.total -= 1

    def join(self, org: str) -> str | None:
        held = self.by_org[org]
        if held >= self.limits.per_org:
            return close_reason(f"{held} connections of this organisation are open, the most allowed: close one or retry later")
        self.by_org[org] = held + 1
        return None

    def leave(self, org: str) -> None:
        self.by_org[org] -= 1
        if self.by_org[org] <= 0:
            del self.by_org[org]


def answer(raw: str | bytes) -> dict[str, object]:
    """The reply to one message of an authenticated client: `{"type": "pong"}` to `{"type": "ping"}`
    (with its "id" when it has a short one), an error that does not close the connection to anything else."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = None
    if not isinstance(msg, dict):
        return _error('messages are JSON objects; after auth the server takes {"type": "ping"}')
    if msg.get("type") == "ping":
        ident = msg.get("id")
        if (isinstance(ident, int) and not isinstance(ident, bool)) or (isinstance(ident, str) and len(ident) <= 64):
            return {"type": "pong", "id": ident}
        return {"type": "pong"}
    if msg.get("type") == "auth":
        return _error("already authenticated: one auth message per connection")
    return _error(f'unknown message type {str(msg.get("type"))[:40]!r}: after auth the server takes {{"type": "ping"}}')


def _error(message: str) -> dict[str, object]:
    return {"type": "error", "status": 400, "message": f"{message} (said once; later such messages are ignored)"}


@dataclass
class Replies:
    """One connection's answers: a pong to every ping, an error to the first message the server does
    not take and nothing to the ones after it, so a client that sends what it should not (and reads
    nothing) is not sent a reply for each."""

    erred: bool = False

    def to(self, raw: str | bytes) -> dict[str, object] | None:
        reply = answer(raw)
        if reply["type"] == "error":
            if self.erred:
                return None
            self.erred = True
        return reply
