"""/api/v1/openapi.json: a valid OpenAPI 3.1 document (openapi-spec-validator) naming every route
the servers register, served by a real `storepulse up`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from core.config import parse_config
from ingest.app import Ingest, ingest_routes
from ingest.monitor import ConnectionMonitor
from state.open import open_connection_stats, open_log, open_rejected
from tests.helpers import ORGS_TOML, Storepulse
from web.app import build_app
from ws_gateway import api, lists, segments
from ws_gateway.openapi import ENDPOINTS, document


@pytest.mark.unit
def test_the_document_is_valid_openapi() -> None:
    validate(document())  # raises, naming the offending part, when it is not


def registered(tmp: Path) -> set[tuple[str, str]]:
    """(method, path) of every route `storepulse up` serves: the ingest's, the read side's, /metrics."""
    config = parse_config(ORGS_TOML, {"ACME_EU2_SECRET": "x"})
    log = open_log(tmp, None)
    stats = open_connection_stats(tmp, None)
    app = build_app([*ingest_routes(Ingest(config, log, open_rejected(tmp, None), ConnectionMonitor(stats))), *segments.routes,
                     *api.routes])
    asyncio.run(log.close())
    stats.close()
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path == "/static":
            continue  # the dashboard's files (ws_gateway/static), not an API
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method == "HEAD":
                continue  # Starlette adds HEAD to every GET
            if route.path == "/api/v1/orgs/{org}/{what}":  # the lists share one route
                found |= {(method, f"/api/v1/orgs/{{org}}/{what}") for what in lists.SORTS}
            else:
                found.add((method, route.path))
    return found


def test_every_registered_route_is_documented(tmp_path: Path) -> None:
    routes = registered(tmp_path)
    documented = {(e.method, e.path) for e in ENDPOINTS}
    assert routes - documented == set(), "routes without a row in ws_gateway/openapi.py ENDPOINTS"
    assert documented - routes == set(), "rows of ENDPOINTS no server registers"
    assert {p for _, p in routes if p.startswith("/api/")} <= set(document()["paths"])


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-openapi")).start()
    yield server
    server.ensure_stopped()


def test_the_server_serves_it_without_a_token(sp: Storepulse) -> None:
    r = httpx.get(f"{sp.base}/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    validate(doc)
    figures = doc["paths"]["/api/v1/orgs/{org}/figures"]["get"]
    assert {"text/csv", "application/json"} <= set(figures["responses"]["200"]["content"])
    assert doc["components"]["schemas"]["Money"]["required"] == ["amount", "currency", "exponent"]


def test_the_currencies_the_dashboard_offers(sp: Storepulse) -> None:
    got = httpx.get(f"{sp.base}/api/v1/currencies", timeout=10).json()  # the test config's rates: USD and JPY
    assert got == {"currencies": [{"code": "EUR", "exponent": 2}, {"code": "JPY", "exponent": 0}, {"code": "USD", "exponent": 2}],
                   "rates_until": "2026-01-05"}
