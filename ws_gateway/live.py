"""The WebSocket server: authenticate with an org token, get a snapshot, then every change.

Protocol (JSON text frames):
  client -> {"type": "auth", "token": "<org token>"}   (or an `Authorization: Bearer` handshake header)
  server -> {"type": "snapshot", "org", "version", "currency", "figures": {...}}
  server -> {"type": "figures", ...same shape, higher version...} after every change
  server -> {"type": "alert", "quota": {"percent": 80, "count", "limit", "at"}} when the plan quota is crossed
  server -> {"type": "error", "status": 401, "message": "..."} then close 4401 on a bad token
A client that sees a version jump can simply trust the payload: every message carries all figures.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from core.config import Config
from ws_gateway import metrics
from ws_gateway.auth import AuthError, org_for
from ws_gateway.hub import Hub

AUTH_TIMEOUT_SECONDS = 10


async def _authenticate(conn: ServerConnection, config: Config) -> str:
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
    return org_for(config, header).id


def handler(config: Config, hub: Hub):  # noqa: ANN201 - websockets' handler type
    async def handle(conn: ServerConnection) -> None:
        try:
            org_id = await _authenticate(conn, config)
        except AuthError as exc:
            metrics.AUTH_FAILURES.inc()
            with contextlib.suppress(ConnectionClosed):
                await conn.send(orjson.dumps({"type": "error", "status": exc.status, "message": exc.message}).decode())
                await conn.close(4000 + exc.status, exc.message[:100])
            return
        except ConnectionClosed:
            return
        sub, snapshot = hub.subscribe(org_id)
        try:
            await conn.send(orjson.dumps(snapshot).decode())
            closed = asyncio.ensure_future(conn.wait_closed())
            while True:
                nxt = asyncio.ensure_future(sub.next())
                done, _ = await asyncio.wait({nxt, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    nxt.cancel()
                    return
                for message in nxt.result():
                    await conn.send(orjson.dumps(message).decode())
        except ConnectionClosed:
            return
        finally:
            hub.unsubscribe(org_id, sub)

    return handle


async def start_ws_server(config: Config, hub: Hub, host: str, port: int) -> Server:
    return await serve(handler(config, hub), host, port, max_size=64 * 1024)
