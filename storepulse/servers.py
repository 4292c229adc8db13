"""Runs the HTTP app (uvicorn) and the WebSocket server in one asyncio loop, with our own signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP connection may cost us (docs/operations.md, Hardening)."""

    keep_alive: float = 5.0  # seconds a connection may sit idle: before its first request, between requests
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    max_header_bytes: int = 64 * 1024  # request line and headers (431 above)
    max_connections: int = 1000  # open at once; a request beyond them is answered 503


class _Config(uvicorn.Config):
    def __init__(self, app: Starlette, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


def _answer(status: bytes, message: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n"
            b"connection: close\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message)


class _HeadTooLarge(Exception):
    pass


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits it lacks: it times out an idle connection only
    after a response, never one that has sent nothing, nor headers that trickle in, and it reads
    headers without a size limit. (The body's own timeout is the app's: ingest/app.py read_body.)"""

    def __init__(self, config: _Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._limits = config.limits
        self._awaiting_head = True  # the next bytes start a request (its headers are not complete)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn hands it a Transport
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        limit = self._limits.max_header_bytes
        self.transport.write(_answer(b"431 Request Header Fields Too Large",
                                     f"request line and headers are over the limit of {limit} bytes".encode()))
        self.transport.close()

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self._limits.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools stops parsing; uvicorn answers through send_400_response

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            seconds = self._limits.header_timeout
            self.transport.write(_answer(b"408 Request Timeout", f"headers not complete within {seconds:g} s".encode()))
            self.transport.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class HttpServer(uvicorn.Server):
    # The caller owns SIGINT/SIGTERM and stops every part in order; uvicorn must not re-raise them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: Starlette, host: str, port: int, limits: HttpLimits | None = None) -> HttpServer:
    limits = limits or HttpLimits()
    return HttpServer(
        _Config(app, limits, host=host, port=port, log_level="warning", access_log=False, lifespan="off", loop="uvloop",
                http=_Protocol, timeout_keep_alive=limits.keep_alive,
                # uvicorn answers 503 once this many connections are open, counting the asking one
                limit_concurrency=limits.max_connections + 1,
                proxy_headers=False)  # no proxy in front by default; X-Forwarded-* parsing costs every request
    )


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel spreads new
    connections over them, so N ingest processes use N cores without a balancer in front."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
