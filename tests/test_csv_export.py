"""CSV of every list and series endpoint equals its JSON: over real HTTP, with the organisation's
token, a share token in the URL (as a spreadsheet pulls it) and `Accept: text/csv`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import TOKENS, Storepulse, post_list_orders, wait_json
from ws_gateway.csv_export import flatten, rows, to_csv


@pytest.mark.unit
def test_nested_objects_become_columns_and_formulas_are_defused() -> None:
    table = [{"order": "=1+1", "amount": {"amount": 1200, "currency": "EUR"}, "items": [1, 2], "paid": True, "note": None},
             {"order": "b", "amount": {"amount": -5, "currency": "EUR"}, "extra": "@x"}]
    got = list(csv.reader(io.StringIO(to_csv(table))))
    assert got == [["order", "amount.amount", "amount.currency", "items", "paid", "note", "extra"],
                   ["'=1+1", "1200", "EUR", "[1,2]", "true", "", ""],
                   ["b", "-5", "EUR", "", "", "", "'@x"]]
    assert rows({"by_source": {"web": {"orders": 1}}, "orders": []}, "orders", "by_source") == [{"key": "web", "orders": 1}]
    assert rows({"visitors": 3}, "journey", None) == [{"visitors": 3}]


def same(json_value: Any, text: str) -> bool:
    """Whether a CSV cell says what the JSON value says (written independently of csv_export.cell)."""
    if json_value is None:
        return text == ""
    if isinstance(json_value, bool):
        return text == ("true" if json_value else "false")
    if isinstance(json_value, (int, float)):
        return float(text) == json_value
    if isinstance(json_value, list):
        return bool(json.loads(text) == json_value)
    return text == json_value or (text == f"'{json_value}" and json_value[:1] in "=+-@\t\r")


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-csv"))
    server.extra_args = ["--api-rate", "10000", "--api-burst", "100000"]  # three reads of "all time" per case
    server.start()
    t = int(time.time()) - 3600
    post_list_orders(server, t)
    site = [{"type": "add_to_cart", "id": f"c{i}", "time": (t + i) * 1000, "visitor": f"v{i}", "cart": f"cart{i}",
             "currency": "EUR", "items": [{"product": "mug", "qty": 1, "price": "9.50"}]} for i in range(3)]
    site += [{"type": "email_click", "id": "e1", "time": t * 1000, "customer": "cus_a", "campaign": "=HYPERLINK(\"x\")"}]
    assert server.post_events({"events": site}).status_code == 200
    wait_json(server, lambda: server.get("/api/v1/orgs/acme/orders", period="all").json(), lambda b: len(b["orders"]) >= 4)
    yield server
    server.ensure_stopped()


TODAY = dt.date.today()
AT = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()  # the quota's "now", the same for JSON and CSV
ENDPOINTS: list[tuple[str, dict[str, str]]] = [
    ("orders", {"period": "all"}), ("orders", {"period": "all", "table": "by_source"}), ("products", {"period": "all"}),
    ("pairs", {"period": "all"}), ("customers", {"period": "all"}), ("carts", {"period": "all"}),
    ("carts", {"period": "all", "table": "most_abandoned_products"}), ("attribution", {"period": "all"}),
    ("attribution", {"period": "all", "table": "content"}),
    ("series", {"metric": "gross_revenue", "granularity": "day", "from": (TODAY - dt.timedelta(days=3)).isoformat(),
                "to": (TODAY + dt.timedelta(days=1)).isoformat()}),
    ("connections", {}), ("journey", {"period": "all"}), ("quota", {"at": AT}), ("rejected", {}), ("quarantine", {}),
]


@pytest.mark.parametrize(("what", "params"), ENDPOINTS)
def test_the_csv_is_the_json(sp: Storepulse, what: str, params: dict[str, str]) -> None:
    url = f"{sp.base}/api/v1/orgs/acme/{what}"
    auth = {"Authorization": f"Bearer {TOKENS['acme']}"}
    as_json = httpx.get(url, params=params, headers=auth, timeout=10).json()
    as_csv = httpx.get(url, params={**params, "format": "csv"}, headers=auth, timeout=10)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"] == f'inline; filename="{what}.csv"'
    by_accept = httpx.get(url, params=params, headers={**auth, "Accept": "text/csv"}, timeout=10)
    assert by_accept.text == as_csv.text
    want = [flatten(r) for r in rows(as_json, what, params.get("table"))]
    got = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert set(g) >= set(w)
        for key, value in w.items():
            assert same(value, g[key]), (key, value, g[key])
        assert all(g[k] == "" for k in set(g) - set(w))  # a column another row has is empty here


def test_a_share_token_in_the_url_pulls_csv(sp: Storepulse) -> None:
    made = httpx.post(f"{sp.base}/api/v1/orgs/acme/shares", json={"expires": "1h"},
                      headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10).json()
    url = f"{sp.base}/api/v1/orgs/acme/orders?period=all&format=csv&token={made['token']}"
    r = httpx.get(url, timeout=10)  # what =IMPORTDATA(url) sends: no header
    assert r.status_code == 200 and r.text == httpx.get(url.replace(f"&token={made['token']}", ""), timeout=10,
                                                          headers={"Authorization": f"Bearer {TOKENS['acme']}"}).text
    assert len(list(csv.DictReader(io.StringIO(r.text)))) >= 4
    attributed = httpx.get(f"{sp.base}/api/v1/orgs/acme/attribution?period=all&format=csv&token={made['token']}", timeout=10)
    # a campaign named like a formula (it comes from a site's events) is shown, not run, by a spreadsheet
    assert list(csv.reader(io.StringIO(attributed.text)))[1][:2] == ["'=HYPERLINK(\"x\")", "2"]


def test_errors_stay_json(sp: Storepulse) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['acme']}"}
    r = httpx.get(f"{sp.base}/api/v1/orgs/acme/orders", params={"format": "xml"}, headers=auth, timeout=10)
    assert r.status_code == 400 and r.json() == {"error": "format must be csv or json, got 'xml'"}
    r = httpx.get(f"{sp.base}/api/v1/orgs/acme/orders", params={"format": "csv", "table": "nope"}, headers=auth, timeout=10)
    assert r.status_code == 400 and "table must be one of" in r.json()["error"]
    r = httpx.get(f"{sp.base}/api/v1/orgs/acme/orders", params={"format": "csv", "sort": "x"}, headers=auth, timeout=10)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert httpx.get(f"{sp.base}/api/v1/orgs/acme/orders?format=csv&token=sps_{uuid.uuid4().hex}", timeout=10).status_code == 401
