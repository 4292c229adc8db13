"""The one way an HTTP app of storepulse is built: its routes, /metrics, the security headers."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from web.security import SecurityHeaders


async def metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes share the port (`ingest --processes N`): whichever answers the scrape
        # reports the sum over all of them, from the files each one writes.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(routes: list[BaseRoute]) -> Starlette:
    return Starlette(routes=[*routes, Route("/metrics", metrics, methods=["GET"])], middleware=[Middleware(SecurityHeaders)])
