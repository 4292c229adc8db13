"""The one way an HTTP app of storepulse is built: its routes, /metrics, the security headers, and
errors answered as {"error": "..."}: a route raises HTTPException (or an exception its component
has a handler for) and the handler renders it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ExceptionHandler

from web.responses import error_response
from web.security import SecurityHeaders


async def metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes share the port (`ingest --processes N`): whichever answers the scrape
        # reports the sum over all of them, from the files each one writes.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    """A route's HTTPException, or the router's own (no such path: 404; another method: 405 with Allow)."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


def build_app(routes: list[BaseRoute], handlers: Mapping[Any, ExceptionHandler] | None = None,
              state: Mapping[str, object] | None = None) -> Starlette:
    """The app of `routes` and /metrics. `handlers` answer the exceptions of a component's routes;
    `state` is what its routes read (`request.app.state.NAME`)."""
    app = Starlette(routes=[*routes, Route("/metrics", metrics, methods=["GET"])], middleware=[Middleware(SecurityHeaders)],
                    exception_handlers={HTTPException: http_error, **(handlers or {})})
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    return app
