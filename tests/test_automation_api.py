"""GET /api/v1/orgs/{org}/automations[/{id}] in process (ws_gateway/api.py over httpx's ASGI transport,
real SQLite stores): the config's definitions in the shape the config takes, one organisation's only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from core.config import parse_config
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_readmodel import SqliteReadModel
from state.sqlite_rejected import SqliteRejectedStore
from web.app import build_app
from ws_gateway import api

CONFIG = """
[orgs.acme]
currency = "EUR"
token = "acme-token-0123456789"
locale = "fr"
[orgs.acme.automations.big-order]
trigger = "order.paid"
if = { order_value = { gte = "100.00" } }
send = ["ops", "crm"]
[orgs.acme.automations.reminder]
trigger = "cart.abandoned"
wait = "4h"
cancel_on = ["order.paid"]
once = true
send = ["customer"]
[orgs.acme.channels.ops]
kind = "slack"
url = "https://hooks.slack.example/ops"

[orgs.acme.channels.crm]
kind = "slack"
url = "https://hooks.slack.example/crm"

[orgs.acme.channels.customer]
kind = "slack"
url = "https://hooks.slack.example/customer"
[orgs.other]
currency = "EUR"
token = "other-token-0123456789"
[orgs.other.automations.secret-plan]
trigger = "order.paid"
send = ["ops"]
[orgs.other.channels.ops]
kind = "slack"
url = "https://hooks.slack.example/ops"
"""


def get(tmp: Path, path: str, token: str) -> httpx.Response:
    side = api.ReadSide(parse_config(CONFIG, {}), SqliteReadModel(tmp / "readmodel.sqlite3"),
                        SqliteRejectedStore(tmp / "rejected.sqlite3"), SqliteConnectionStats(tmp / "connections.sqlite3"),
                        ws_port=0)
    app = build_app(api.routes, api.handlers, {"read_side": side})

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {token}"})

    return asyncio.run(one())


def test_the_list_and_one_automation(tmp_path: Path) -> None:
    r = get(tmp_path, "/api/v1/orgs/acme/automations", "acme-token-0123456789")
    assert r.status_code == 200
    assert r.json() == {"org": "acme", "locale": "fr", "automations": [
        {"id": "big-order", "trigger": "order.paid", "send": ["ops", "crm"], "if": {"order_value": {"gte": "100.00"}}},
        {"id": "reminder", "trigger": "cart.abandoned", "send": ["customer"], "wait": "4h", "cancel_on": ["order.paid"],
         "once": True}]}
    r = get(tmp_path, "/api/v1/orgs/acme/automations/reminder", "acme-token-0123456789")
    assert r.status_code == 200 and r.json()["wait"] == "4h"


def test_errors_are_json_and_another_organisation_sees_nothing(tmp_path: Path) -> None:
    r = get(tmp_path, "/api/v1/orgs/acme/automations/nope", "acme-token-0123456789")
    assert (r.status_code, r.json()) == (404, {"error": "no automation 'nope' in organisation 'acme'"})
    r = get(tmp_path, "/api/v1/orgs/other/automations", "acme-token-0123456789")
    assert r.status_code == 403 and "error" in r.json()
    r = get(tmp_path, "/api/v1/orgs/other/automations/secret-plan", "acme-token-0123456789")
    assert r.status_code == 403
