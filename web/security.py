"""Security headers on every response of every HTTP app (ingest, read API, dashboard), in one place.

Every response gets `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
`X-Frame-Options: DENY` and, unless its route set its own, a Content-Security-Policy that allows
nothing but same-origin resources and no framing. A page with inline code (the dashboard) sets its
own policy with `page_policy`: the same, plus the hashes of exactly its inline scripts and styles
and the WebSocket origins it connects to. Only a response whose own policy allows framing (the
`/embed/` pages, ws_gateway/embed.py) goes without X-Frame-Options.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BASE = "default-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", _BASE.encode()),
]
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]{2,45}")


def _sources(html: str, tag: str) -> str:
    """'self' and the hash of each inline element `tag` of `html`, as CSP sources."""
    hashes = [base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
              for t, body in _INLINE.findall(html) if t == tag]
    return " ".join(["'self'", *(f"'sha256-{h}'" for h in hashes)])


def page_policy(html: str) -> str:
    """The policy of a page whose inline <script> and <style> elements are exactly those in `html`
    (no inline event handlers or style attributes: those would need 'unsafe-inline')."""
    return f"{_BASE}; script-src {_sources(html, 'script')}; style-src {_sources(html, 'style')}"


def with_websocket(policy: str, host: str | None, port: int) -> str:
    """`policy` allowing WebSocket connections to `host`:`port` (the page's own host, another port).
    A host that is not a plain name or address (it comes from the request's Host header) adds none."""
    if not host or not _HOST.fullmatch(host):
        return f"{policy}; connect-src 'self'"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{policy}; connect-src 'self' ws://{netloc} wss://{netloc}"


def _frames(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response's own policy allows framing (a frame-ancestors other than 'none')."""
    for name, value in headers:
        if name.lower() == b"content-security-policy":
            ancestors = [d.strip() for d in value.split(b";") if d.strip().startswith(b"frame-ancestors")]
            return bool(ancestors) and ancestors[0] != b"frame-ancestors 'none'"
    return False


class SecurityHeaders:
    """ASGI middleware: adds the headers above to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if _frames(headers):  # /embed: its own policy allows framing, X-Frame-Options would forbid it
                    present.add(b"x-frame-options")
                headers += [h for h in _HEADERS if h[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
