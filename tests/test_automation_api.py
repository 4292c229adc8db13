"""The automation routes in process (ws_gateway/api.py over httpx's ASGI transport, real SQLite stores
and event log): the config's definitions with the API's over them, in the shape the config takes; PUT
and DELETE append control events to the log, a bad definition is a 400 naming its JSON path; one
organisation's only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
from msgspec import Raw

from core.automation_records import AutomationDefinition
from core.changes import Record
from core.config import parse_config
from core.definitions import read_definition
from core.events import Event, event_from_json
from core.records import RecordKind
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_readmodel import SqliteReadModel
from state.sqlite_rejected import SqliteRejectedStore
from web.app import build_app
from ws_gateway import api

PARTITIONS = 2
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


def call(tmp: Path, method: str, path: str, token: str = "acme-token-0123456789", body: object = None) -> httpx.Response:
    side = api.ReadSide(parse_config(CONFIG, {}), SqliteReadModel(tmp / "readmodel.sqlite3"),
                        SqliteRejectedStore(tmp / "rejected.sqlite3"), SqliteConnectionStats(tmp / "connections.sqlite3"),
                        ws_port=0)
    log = SqliteEventLog(tmp / "log.sqlite3", PARTITIONS)
    app = build_app(api.routes, api.handlers, {"read_side": side, "event_log": log})

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            content = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body)
            response = await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, content=content)
        await log.close()
        return response

    return asyncio.run(one())


def get(tmp: Path, path: str, token: str) -> httpx.Response:
    return call(tmp, "GET", path, token)


def logged(tmp: Path) -> list[Event]:
    reader = SqliteLogReader(tmp / "log.sqlite3", PARTITIONS)
    return [event_from_json(data) for p in range(PARTITIONS) for _, data in reader.read(p, None, 100)]


def test_the_list_and_one_automation(tmp_path: Path) -> None:
    r = get(tmp_path, "/api/v1/orgs/acme/automations", "acme-token-0123456789")
    assert r.status_code == 200
    assert r.json() == {"org": "acme", "locale": "fr", "automations": [
        {"id": "big-order", "trigger": "order.paid", "send": ["ops", "crm"], "if": {"order_value": {"gte": "100.00"}},
         "source": "config"},
        {"id": "reminder", "trigger": "cart.abandoned", "send": ["customer"], "wait": "4h", "cancel_on": ["order.paid"],
         "once": True, "source": "config"}]}
    r = get(tmp_path, "/api/v1/orgs/acme/automations/reminder", "acme-token-0123456789")
    assert r.status_code == 200 and r.json()["wait"] == "4h"


def test_errors_are_json_and_another_organisation_sees_nothing(tmp_path: Path) -> None:
    r = get(tmp_path, "/api/v1/orgs/acme/automations/nope", "acme-token-0123456789")
    assert (r.status_code, r.json()) == (404, {"error": "no automation 'nope' in organisation 'acme'"})
    r = get(tmp_path, "/api/v1/orgs/other/automations", "acme-token-0123456789")
    assert r.status_code == 403 and "error" in r.json()
    r = get(tmp_path, "/api/v1/orgs/other/automations/secret-plan", "acme-token-0123456789")
    assert r.status_code == 403


def test_put_appends_a_control_event_and_a_bad_definition_is_a_400_naming_its_path(tmp_path: Path) -> None:
    body = {"trigger": "order.paid", "if": {"all": [{"order_value": {"gte": "50.00"}}]}, "send": ["ops"], "locale": "it"}
    r = call(tmp_path, "PUT", "/api/v1/orgs/acme/automations/mid-order", body=body)
    assert r.status_code == 202 and r.json()["status"] == "accepted" and r.json()["trigger"] == "order.paid"
    [event] = logged(tmp_path)
    assert (event.org, event.store, event.kind, event.name) == ("acme", "", "definition.put", "automation/mid-order")
    d = read_definition(event)
    assert d is not None and d.body == body
    for bad, status, error in [
        ({**body, "if": {"all": [{"order_value": {"gte": "50.001"}}]}}, 400,
         '$.if.all[0].order_value.gte: "50.001" has more decimals than EUR allows (2 decimals)'),
        ({**body, "send": ["pager"]}, 400, "$.send: no channel 'pager' in organisation 'acme' (define it in the config)"),
        ({**body, "wait": "soon"}, 400, "$.wait: 'soon' is not a duration"),
        ({**body, "trigger": "order.payed"}, 400, "$.trigger: 'order.payed' is not a trigger"),
        (b"{not json", 400, "the body is not JSON"),
    ]:
        r = call(tmp_path, "PUT", "/api/v1/orgs/acme/automations/mid-order", body=bad)
        assert r.status_code == status and r.json()["error"].startswith(error), r.json()
    assert len(logged(tmp_path)) == 1  # nothing refused reached the log
    r = call(tmp_path, "PUT", "/api/v1/orgs/other/automations/x", body=body)
    assert r.status_code == 403 and len(logged(tmp_path)) == 1


def test_the_dataflows_records_are_listed_over_the_config_and_delete_appends_a_control_event(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write([
        Record("acme", 1, RecordKind.AUTOMATION, "mid-order", "",
               AutomationDefinition("mid-order", Raw(b'{"trigger":"order.paid","send":["ops"]}'))),
        Record("acme", 2, RecordKind.AUTOMATION, "reminder", "",
               AutomationDefinition("reminder", Raw(b"null"), deleted=True)),
    ])
    model.close()
    listed = get(tmp_path, "/api/v1/orgs/acme/automations", "acme-token-0123456789").json()["automations"]
    assert [(a["id"], a["source"]) for a in listed] == [("big-order", "config"), ("mid-order", "api")]
    assert call(tmp_path, "DELETE", "/api/v1/orgs/acme/automations/reminder").status_code == 404  # deleted already
    r = call(tmp_path, "DELETE", "/api/v1/orgs/acme/automations/big-order")
    assert r.status_code == 202
    [event] = logged(tmp_path)
    assert (event.kind, event.name) == ("definition.deleted", "automation/big-order")


def test_a_preview_renders_the_message_of_a_sample_firing_and_saves_nothing(tmp_path: Path) -> None:
    from core.automations.messages import money, render
    from core.automations.samples import sample

    body = {"trigger": "cart.abandoned", "wait": "1h", "locale": "de",
            "templates": {"subject": "{{ name }}, Ihre {{ item_count }} Artikel ({{ amount }}) warten"}}
    r = call(tmp_path, "POST", "/api/v1/orgs/acme/automations/preview?id=reminder-de", body=body)  # no `send`: none needed
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["id"], got["trigger"], got["locale"], got["digest"]) == ("reminder-de", "cart.abandoned", "de", None)
    assert got["message"]["subject"] == f"Ann Example, Ihre 3 Artikel ({money(3000, 'EUR', 'de')}) warten"
    at = got["sample"]["at"]
    _, cause, payload = sample("cart.abandoned", store="", currency="EUR", at=at)
    want = render("reminder-de", "cart.abandoned", "sample-customer", cause, at, at + 3_600_000, payload, locale="de",
                  timezone="UTC", templates=body["templates"])
    assert got["message"]["text"] == want.text and got["message"]["json"]["due_at"] == at + 3_600_000
    # the organisation's language when the definition names none (fr), and a template that does not compile
    r = call(tmp_path, "POST", "/api/v1/orgs/acme/automations/preview", body={"trigger": "order.paid", "send": ["ops"]})
    assert r.status_code == 200 and r.json()["locale"] == "fr" and "30,00" in r.json()["message"]["text"], r.text
    r = call(tmp_path, "POST", "/api/v1/orgs/acme/automations/preview", body={**body, "templates": {"subject": "{{ name"}})
    assert r.status_code == 400 and r.json()["error"].startswith("$.templates.subject: template line 1"), r.text
    assert logged(tmp_path) == []  # nothing reached the log
