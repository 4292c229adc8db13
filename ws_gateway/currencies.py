"""`GET /api/v1/currencies`: the presentation currencies the server can convert to (EUR and every
currency its ECB rates have), each with its ISO 4217 exponent, and the last day the rates cover:
what the dashboard's currency filter offers. Public: it says nothing about any organisation."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.money import EXPONENTS
from web.responses import json_response


async def currencies(request: Request) -> Response:
    rates = request.app.state.read_side.rates
    codes = sorted({"EUR", *(rates.currencies if rates is not None else [])})
    return json_response({"currencies": [{"code": c, "exponent": EXPONENTS[c]} for c in codes],
                          "rates_until": rates.last_day() if rates is not None else None})


routes: list[BaseRoute] = [Route("/api/v1/currencies", currencies, methods=["GET"])]
