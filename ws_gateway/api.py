"""HTTP read API and the dashboard page."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from core.config import Config
from core.figures import PERIODS, MissingRate, compute_figures
from state.readmodel import ReadModel
from ws_gateway.auth import AuthError, org_for


def gateway_routes(config: Config, model: ReadModel, ws_port: int) -> list[Route]:
    async def figures(request: Request) -> Response:
        org_id = request.path_params["org"]
        try:
            org = org_for(config, request.headers.get("authorization"), org_id)
        except AuthError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        period = request.query_params.get("period", "today")
        if period not in PERIODS:
            return JSONResponse({"error": f"period must be one of {', '.join(PERIODS)}, got {period!r}"}, status_code=400)
        store = request.query_params.get("store")
        if store is not None and store not in org.stores:
            return JSONResponse({"error": f"organisation {org.id!r} has no store {store!r}"}, status_code=404)
        version, days = await asyncio.to_thread(model.snapshot, org.id)
        try:
            result = compute_figures(
                days, period=period, now=datetime.now(timezone.utc), tz=org.tz, currency=org.currency, store=store
            )
        except MissingRate as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        body = {"org": org.id, "store": store, "period": period, "version": version, **result.to_json()}
        return JSONResponse(body)

    page = files("ws_gateway").joinpath("static/dashboard.html").read_text()

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(page.replace("__WS_PORT__", str(ws_port)))

    return [
        Route("/api/v1/orgs/{org}/figures", figures, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
    ]
