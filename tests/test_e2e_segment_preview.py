"""POST /segments/preview through the real path (`storepulse up`, embedded SQLite and on a real
redis-server): the gateway builds its preview columns from the stored records at start and keeps
them from the change feed (ws_gateway/preview_index.py); every preview it answers from them equals
the records' path (ws_gateway/segment_preview.py `preview_records`, run here over the same read
model at the answer's `as_of`), for rules of every criterion the preview answers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.clock import ms_from_iso
from core.rates import parse_ecb_csv
from core.rules import Context, parse_rule, parse_segments
from state.open import open_read_model
from tests.helpers import RATES_CSV, Storepulse, wait_for
from tests.test_e2e_segment_filters import cart, order, post
from tests.test_e2e_segments import call, segments_server, uid
from ws_gateway.segment_preview import preview_records

HOUR, DAY = 3_600_000, 86_400_000
RULES: list[dict[str, Any]] = [
    {"spent": {"gte": "100.00", "within": "30d"}},
    {"orders": {"gte": 2, "within": "7d"}},
    {"orders": {"eq": 0}},
    {"net_spent": {"gte": "50.00"}},
    {"order_value": {"gte": "50.00", "within": "20d"}},
    {"items": {"gte": 3, "within": "90d"}},
    {"bought_product": {"product": "mug", "gte": 1, "within": "14d"}},
    {"all": [{"orders": {"gte": 1}}, {"last_order_at": {"before": "3d"}}]},
    {"first_order_at": {"after": "30d"}},
    {"last_order_at": {"on": "1d"}},
    {"registered_at": {"after": "7d"}},
    {"last_active_at": {"after": "24h"}},
    {"last_cart_created_at": {"exists": True}},
    {"open_cart_value": {"gte": "20.00"}},
    {"store": {"eq": "acme-site"}},
    {"stores": {"gte": 1}},
    {"any": [{"in_segment": {"eq": "buyers"}}, {"not": {"in_segment": {"eq": "open_cart"}}}]},
]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def sp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    running = segments_server(request, tmp_path_factory, "preview")
    yield running
    running.ensure_stopped()


def metric(sp: Storepulse, name: str) -> float | None:
    found = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(f"{sp.base}/metrics", timeout=5).text, re.M)
    return float(found.group(1)) if found else None


def events(now: int, customers: list[str]) -> list[dict[str, Any]]:
    """Orders over 40 days (one in USD), a cart, for each customer: clear of every window's edge."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(customers):
        for k in range(i % 4):
            t = now - (k * 9 + i % 5) * DAY - 3 * HOUR
            out.append(order(c, f"{20 + 35 * k}.00", t, ("mug" if k % 2 else "pot", 1 + k, "20.00")))
        if i % 3 == 0:
            out.append(cart(c, f"cart-{c}", f"{10 * i}.00", now - 30 * 60_000, "vase"))
    out.append({**order(customers[-1], "80.00", now - 2 * DAY - 3 * HOUR, ("mug", 1, "80.00")), "currency": "USD"})
    return out


def answers(sp: Storepulse) -> list[tuple[Any, tuple[int, list[str]], tuple[int, list[str]]]]:
    """Each rule's preview over HTTP, and the records' path over the same read model at its as_of."""
    segments = parse_segments({s["id"]: s["rule"] for s in call(sp, "GET", "/segments").json()["segments"]
                               if s["subject"] == "customer"}, currency="EUR", timezone="Europe/Berlin")
    ctx = Context("Europe/Berlin", "EUR", parse_ecb_csv(RATES_CSV), segments)
    model = open_read_model(sp.data_dir, sp.redis_url)
    try:
        out = []
        for raw in RULES:
            r = call(sp, "POST", "/segments/preview", {"rule": raw})
            assert r.status_code == 200, r.text
            got = r.json()
            rule = parse_rule(raw, currency="EUR", timezone="Europe/Berlin")
            expected = preview_records(rule, lambda kind: model.records("acme", kind), ms_from_iso(got["as_of"]), ctx)
            out.append((raw, (got["members"], got["first"]), expected))
        return out
    finally:
        model.close()


def test_previews_from_the_columns_equal_the_records_path_after_a_restart_and_live_writes(sp: Storepulse) -> None:
    n = uid()
    now = int(time.time() * 1000)
    before = [f"a{i:02d}-{n}" for i in range(12)]
    post(sp, *events(now, before))
    wait_for(lambda: set(before[1:4]) <= {m["customer"] for m in call(sp, "GET", "/segments/buyers/members?limit=10000")
                                          .json()["members"]}, 20, "the first orders to be taken")
    sp.stop()  # a restart: the columns are built from the stored records
    sp.start()
    wait_for(lambda: metric(sp, 'storepulse_segment_preview_build_seconds{org="acme"}') is not None, 30,
             "the preview columns to be built")
    after = [f"b{i:02d}-{n}" for i in range(12)]
    post(sp, *events(now, after), *events(now - DAY, before[:6]))  # these reach the columns through the feed
    wait_for(lambda: set(after[1:4]) <= {m["customer"] for m in call(sp, "GET", "/segments/buyers/members?limit=10000")
                                         .json()["members"]}, 20, "the later orders to be taken")
    # the feed reaches the gateway a few ms after the read model: equal once it has
    last: list[Any] = []

    def equal() -> bool:
        last[:] = answers(sp)
        return all(got == expected for _, got, expected in last)
    wait_for(equal, 20, "the previews to equal the records' path")
    assert all(got[0] > 0 for _, got, _ in last), [raw for raw, got, _ in last if not got[0]]  # no rule is vacuous
    columns = metric(sp, 'storepulse_segment_previews_total{path="columns"}')
    assert columns is not None and columns >= len(RULES), (columns, sp.log_tail())
    assert metric(sp, 'storepulse_segment_previews_total{path="records"}') in (None, 0.0)
    # what the columns do not hold is still refused as before
    r = call(sp, "POST", "/segments/preview", {"rule": {"email_engaged": {"gte": 1, "within": "30d"}}})
    assert r.status_code == 400 and "PUT" in r.json()["error"], r.text


def test_a_restart_takes_the_columns_saved_at_shutdown(sp: Storepulse) -> None:
    """Ctrl-C saves the columns (ws_gateway/preview_keep.py); the next start takes them from the file
    (it builds none), catches up the days written since, and answers as the records' path."""
    def logged(what: str) -> int:
        return sp.logfile.read_text(errors="replace").count(what)

    n = uid()
    now = int(time.time() * 1000)
    customers = [f"k{i:02d}-{n}" for i in range(12)]
    post(sp, *events(now, customers))
    wait_for(lambda: set(customers[1:4]) <= {m["customer"] for m in call(sp, "GET", "/segments/buyers/members?limit=10000")
                                             .json()["members"]}, 20, "the orders to be taken")
    wait_for(lambda: metric(sp, 'storepulse_segment_preview_build_seconds{org="acme"}') is not None, 30,
             "the preview columns to be ready")
    taken, built, saved = (logged("preview columns of acme taken from"), logged("preview columns of acme built in"),
                           logged("preview-columns-acme.pickle ("))
    assert sp.stop() == 0, sp.log_tail()
    assert logged("preview-columns-acme.pickle (") == saved + 1, sp.log_tail()
    assert (sp.data_dir / "preview-columns-acme.pickle").exists()
    sp.start()
    wait_for(lambda: logged("preview columns of acme taken from") == taken + 1, 30,
             f"the columns to be taken from the file ({sp.logfile})")
    assert logged("preview columns of acme built in") == built, sp.log_tail()
    last: list[Any] = []

    def equal() -> bool:
        last[:] = answers(sp)
        return all(got == expected for _, got, expected in last)
    wait_for(equal, 20, "the previews to equal the records' path")
    assert all(got[0] > 0 for _, got, _ in last), [raw for raw, got, _ in last if not got[0]]
    assert metric(sp, 'storepulse_segment_previews_total{path="records"}') in (None, 0.0)
