"""The read API in process (ws_gateway/api.py over httpx's ASGI transport, real SQLite stores): "today"
comes from the ReadSide's clock, and each error is {"error": "..."} with its status, from one handler."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import parse_config
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_readmodel import SqliteReadModel
from state.sqlite_rejected import SqliteRejectedStore
from web.app import build_app
from ws_gateway import api

TOKEN = "read-api-token-0123456789"
CONFIG = f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"
[orgs.acme.stores.shop]
provider = "events"
secret = "read-api-site-key-0123"
"""
NOW = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # already the 23rd in Berlin


def get(tmp: Path, path: str, token: str | None = TOKEN, **params: Any) -> httpx.Response:
    side = api.ReadSide(parse_config(CONFIG, {}), SqliteReadModel(tmp / "readmodel.sqlite3"),
                        SqliteRejectedStore(tmp / "rejected.sqlite3"), SqliteConnectionStats(tmp / "connections.sqlite3"),
                        ws_port=0, now=lambda: NOW)
    app = build_app(api.routes, api.handlers, {"read_side": side})

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.get(path, params=params, headers=headers)

    return asyncio.run(one())


def test_today_is_the_read_sides_clock_in_the_organisations_zone(tmp_path: Path) -> None:
    body = get(tmp_path, "/api/v1/orgs/acme/figures").json()
    assert (body["period"], body["from"], body["to"]) == ("today", "2026-11-23", "2026-11-23")
    body = get(tmp_path, "/api/v1/orgs/acme/figures", period="yesterday").json()
    assert (body["from"], body["to"]) == ("2026-11-22", "2026-11-22")
    assert get(tmp_path, "/api/v1/orgs/acme/quota").json()["window"]["to"] == "2026-11-22T23:30:00+00:00"


@pytest.mark.parametrize(("path", "params", "token", "status", "error"), [
    ("figures", {}, None, 401, "missing bearer token: send 'Authorization: Bearer <org token>'"),
    ("figures", {}, "not-the-token-0123456789", 401, "the bearer token is not valid"),
    ("figures", {"currency": "EURO"}, TOKEN, 400, "currency 'EURO' is not an ISO 4217 code"),
    ("figures", {"store": "nope"}, TOKEN, 404, "organisation 'acme' has no store 'nope'"),
    ("figures", {"period": "fortnight"}, TOKEN, 400, None),  # BadPeriod's own message
    ("orders", {"limit": "0"}, TOKEN, 400, "limit must be a whole number from 1 to 1000, got '0'"),
    ("quarantine", {"limit": "1001"}, TOKEN, 400, "limit must be a whole number from 1 to 1000, got '1001'"),
    ("orders", {"sort": "name"}, TOKEN, 400, "sort for orders must be one of latest, best, got 'name'"),
    ("customers", {"filter": "vip"}, TOKEN, 400, "filter must be never_bought (or absent), got 'vip'"),
    ("wishlists", {}, TOKEN, 404, None),
    ("rejected/nope", {}, TOKEN, 404, "no such rejected delivery in this organisation"),
    ("quota", {"at": "yesterday"}, TOKEN, 400, None),
])
def test_each_error_is_its_status_and_message(tmp_path: Path, path: str, params: dict[str, str], token: str | None,
                                             status: int, error: str | None) -> None:
    r = get(tmp_path, f"/api/v1/orgs/acme/{path}", token=token, **params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"} and (error is None or r.json()["error"] == error)


def test_another_organisations_data_is_403(tmp_path: Path) -> None:
    r = get(tmp_path, "/api/v1/orgs/beta/figures")
    assert (r.status_code, r.json()) == (403, {"error": "this token does not give access to organisation 'beta'"})
