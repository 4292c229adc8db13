"""Runs the HTTP app (uvicorn) and the WebSocket server in one asyncio loop, with our own signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route



class HttpServer(uvicorn.Server):
    # The caller owns SIGINT/SIGTERM and stops every part in order; uvicorn must not re-raise them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes share the port (`ingest --processes N`): whichever answers the scrape
        # reports the sum over all of them, from the files each one writes.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(routes: list[Route]) -> Starlette:
    return Starlette(routes=[*routes, Route("/metrics", _metrics, methods=["GET"])])


def http_server(app: Starlette, host: str, port: int) -> HttpServer:
    return HttpServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", loop="uvloop", http="httptools",
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
