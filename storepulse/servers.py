"""Runs the HTTP app (uvicorn) and the WebSocket server in one asyncio loop, with our own signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
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
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(routes: list[Route]) -> Starlette:
    return Starlette(routes=[*routes, Route("/metrics", _metrics, methods=["GET"])])


def http_server(app: Starlette, host: str, port: int) -> HttpServer:
    return HttpServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", loop="uvloop", http="httptools",
                       proxy_headers=False)  # no proxy in front by default; X-Forwarded-* parsing costs every request
    )


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
