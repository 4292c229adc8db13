"""The WebSocket server: authenticate with an org token, get a snapshot, then every change.

Protocol (JSON text frames):
  client -> {"type": "auth", "token": "<org token>"}   (or an `Authorization: Bearer` handshake header)
  server -> {"type": "snapshot", "org", "version", "currency", "figures": {...}}
  server -> {"type": "figures", ...same shape, higher version...} after every change
  server -> {"type": "alert", "quota": {"percent": 80, "count", "limit", "at"}} when the plan quota is crossed
  server -> {"type": "segment", "segment", "customer", "change": "entered"|"exited", "at", "cause", "version"}
            for each entry into or exit from a segment (docs/segments.md)
  server -> {"type": "error", "status": 401, "message": "..."} then close 4401 on a bad token
  client -> {"type": "ping", "id": 7}  ->  server -> {"type": "pong", "id": 7}   (any time after auth)
  client -> anything else  ->  server -> {"type": "error", "status": 400, ...} the first time (later ones
            are ignored); the connection stays open
A client that sees a version jump can simply trust the payload: every message carries all figures.

Limits (ws_gateway/limits.py, docs/operations.md): a message over `max_message` bytes closes the
connection with 1009; more messages than the client rate allows, with 1008; a push that a client does
not take within `send_timeout`, with 1008 (it re-fetches a snapshot when it reconnects); connections
over the per-organisation or total cap are closed with 1013 and a reason. The server reads every
client message as it comes, so a client's close handshake always gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from core.clock import ms_of
from core.config import Config
from core.shares import is_share_token
from state.shares import ShareStore
from ws_gateway import metrics
from ws_gateway.auth import AuthError, org_for
from ws_gateway.bucket import TokenBucket
from ws_gateway.clients import ConnectionCaps, Replies, close_reason
from ws_gateway.hub import Hub, Subscriber
from ws_gateway.limits import WsLimits
from ws_gateway.sharing import share_for

AUTH_TIMEOUT_SECONDS = 10
CLOSE_TIMEOUT_SECONDS = 5  # a close handshake the client does not answer: the TCP connection is dropped
MAX_QUEUE = 4  # client messages buffered before the server stops reading the socket (it reads them at once)
WRITE_LIMIT = 32 * 1024  # bytes buffered for a client before a push waits for it to read
# The kernel's send buffer of a connection (Linux doubles it). Left alone, it grows for a client that
# does not read to hundreds of KiB, each push a few KiB, before a send ever waits.
SEND_BUFFER = 64 * 1024
SWEEP_SECONDS = 2.0


class Sweeper:
    """Frees what closed connections leave in reference cycles (their tasks, exceptions, frames),
    with a full collection at most every SWEEP_SECONDS after a connection closes. The servers'
    collector runs rarely (core/gc_policy.py), and a connection that lived for minutes is in its
    oldest generation: without this, each round of 100 clients that came and went left ~10 MiB more
    until the next full collection, which those thresholds make rare."""

    def __init__(self) -> None:
        self._pending: asyncio.TimerHandle | None = None

    def closed(self) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._pending = None
        gc.collect()


async def _authenticate(conn: ServerConnection, config: Config,
                        shares: ShareStore | None = None) -> tuple[str, frozenset[str] | None]:
    """(the organisation, a share link's stores or None for all of them)."""
    header = conn.request.headers.get("Authorization") if conn.request else None
    if header is None:
        try:
            raw = await asyncio.wait_for(conn.recv(), AUTH_TIMEOUT_SECONDS)
            msg = orjson.loads(raw)
        except TimeoutError:
            raise AuthError(401, f"no auth message within {AUTH_TIMEOUT_SECONDS} s") from None
        except orjson.JSONDecodeError:
            raise AuthError(400, 'the first message must be {"type": "auth", "token": "..."}') from None
        if not isinstance(msg, dict) or msg.get("type") != "auth" or not isinstance(msg.get("token"), str):
            raise AuthError(400, 'the first message must be {"type": "auth", "token": "..."}')
        header = f"Bearer {msg['token']}"
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    if is_share_token(token):
        share = await asyncio.to_thread(share_for, shares, token, None, ms_of(datetime.now(UTC)))
        org = config.orgs.get(share.org)
        if org is None:
            raise AuthError(401, "the share token's organisation no longer exists")
        return org.id, frozenset(share.scoped(org).stores) if share.stores else None
    return org_for(config, header).id, None


async def _close(conn: ServerConnection, code: int, reason: str) -> None:
    """Closes with `code`; a client that does not read gets its TCP connection dropped instead."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await conn.close(code, close_reason(reason))
    except TimeoutError:
        conn.transport.abort()


async def _send(conn: ServerConnection, message: bytes, limits: WsLimits) -> bool:
    """Sends one message (JSON, encoded) as a text frame; False once the connection is gone, or closed
    because the client does not read (its buffers stay bounded by WRITE_LIMIT plus this message)."""
    try:
        async with asyncio.timeout(limits.send_timeout):
            await conn.send(message, text=True)
        return True
    except TimeoutError:
        metrics.WS_REFUSED.labels("slow_reader").inc()
        await _close(conn, CloseCode.POLICY_VIOLATION,
                     f"a push waited {limits.send_timeout:g} s for this client to read: reconnect for a snapshot")
        return False
    except ConnectionClosed:
        return False


class _Direct:
    """A push written straight into an idle connection's buffer, as websockets.broadcast does, when
    the connection is open, no send of its own is under way and its buffer is below WRITE_LIMIT;
    otherwise the subscriber's writer task sends it (with its timeout for clients that do not read)."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.sending = False

    def __call__(self, message: bytes) -> bool:
        conn = self.conn
        if self.sending or conn.state is not State.OPEN or conn.transport.get_write_buffer_size() >= WRITE_LIMIT:
            return False
        broadcast((conn,), message, text=True)
        return True


async def _write(conn: ServerConnection, sub: Subscriber, direct: _Direct, limits: WsLimits) -> None:
    while True:
        for message in await sub.next():
            direct.sending = True
            try:
                if not await _send(conn, message, limits):
                    return
            finally:
                direct.sending = False


async def _read(conn: ServerConnection, sub: Subscriber, limits: WsLimits) -> None:
    """Answers every client message (ws_gateway/clients.py) until the client closes. A client that
    sends more than its rate is closed with 1008, and no longer read: what it sends after that
    waits in its own buffers, and its connection is dropped if it does not answer the close."""
    bucket = TokenBucket(limits.client_rate, limits.client_burst)
    replies = Replies()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionClosed):
        async for raw in conn:
            if bucket.take(1, loop.time()) > 0:
                metrics.WS_REFUSED.labels("client_rate").inc()
                await _close(conn, CloseCode.POLICY_VIOLATION,
                             f"more than {limits.client_burst:g} messages at once or {limits.client_rate:g} a second")
                return
            reply = replies.to(raw)
            if reply is not None:
                sub.reply(reply)


def handler(config: Config, hub: Hub, limits: WsLimits,
            shares: ShareStore | None = None) -> Callable[[ServerConnection], Awaitable[None]]:
    caps = ConnectionCaps(limits)
    sweeper = Sweeper()

    async def live(conn: ServerConnection, org_id: str, stores: frozenset[str] | None) -> None:
        direct = _Direct(conn)
        direct.sending = True  # until the snapshot is sent: nothing may overtake it
        sub, snapshot = hub.subscribe(org_id, direct, stores)
        try:
            if not await _send(conn, orjson.dumps(snapshot), limits):
                return
            direct.sending = False
            reader = asyncio.create_task(_read(conn, sub, limits))
            writer = asyncio.create_task(_write(conn, sub, direct, limits))
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, writer):
                    task.cancel()
                await asyncio.gather(reader, writer, return_exceptions=True)
        finally:
            hub.unsubscribe(org_id, sub)

    async def handle(conn: ServerConnection) -> None:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        refused = caps.open()
        if refused is not None:
            metrics.WS_REFUSED.labels("total").inc()
            await _close(conn, CloseCode.TRY_AGAIN_LATER, refused)
            return
        try:
            try:
                org_id, stores = await _authenticate(conn, config, shares)
            except AuthError as exc:
                metrics.AUTH_FAILURES.inc()
                with contextlib.suppress(ConnectionClosed):
                    await conn.send(orjson.dumps({"type": "error", "status": exc.status, "message": exc.message}).decode())
                await _close(conn, 4000 + exc.status, exc.message)
                return
            except ConnectionClosed:
                return
            refused = caps.join(org_id)
            if refused is not None:
                metrics.WS_REFUSED.labels("per_org").inc()
                await _close(conn, CloseCode.TRY_AGAIN_LATER, refused)
                return
            try:
                await live(conn, org_id, stores)
            finally:
                caps.leave(org_id)
        finally:
            caps.close()
            sweeper.closed()

    return handle


async def start_ws_server(config: Config, hub: Hub, host: str, port: int, limits: WsLimits | None = None,
                          shares: ShareStore | None = None) -> Server:
    limits = limits or WsLimits()
    return await serve(handler(config, hub, limits, shares), host, port, max_size=limits.max_message, max_queue=MAX_QUEUE,
                       write_limit=WRITE_LIMIT, close_timeout=CLOSE_TIMEOUT_SECONDS)
