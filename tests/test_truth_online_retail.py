"""Truth on real data: the UCI Online Retail file replayed through storepulse (replay CLI -> log ->
Bytewax -> read model -> HTTP API) gives exactly what an independent DuckDB query over the same
file gives: per London day gross revenue, refunds, paid orders and AOV; the repeat-purchase rate;
the top-10 products by revenue; the 30-day paid-order count at every month end."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pytest

from tests.helpers import RETAIL_TOML, SHARED, Storepulse

FILE = SHARED / "data" / "online_retail.csv.gz"
pytestmark = pytest.mark.skipif(not FILE.exists(), reason=f"../shared is absent: no {FILE}")

CONFIG = RETAIL_TOML
TOKEN = "retail-token-0123456789"

# The replay mapping of the ingest issue, written as SQL from its text (not from our code).
LINES = f"""
CREATE TABLE lines AS
SELECT InvoiceNo AS inv, StockCode AS product, CAST(Quantity AS BIGINT) AS q, CAST(UnitPrice AS DECIMAL(18, 6)) AS p,
       CASE WHEN CustomerID = '' THEN NULL ELSE CAST(CAST(CAST(CustomerID AS DOUBLE) AS BIGINT) AS VARCHAR) END AS customer,
       strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S') AS t_local
FROM read_csv('{FILE}', header = true, all_varchar = true);
CREATE TABLE orders AS
SELECT inv, min(t_local) AS t_local, any_value(customer) AS customer,
       sum(CASE WHEN q > 0 AND p > 0 THEN round(q * p * 100) ELSE 0 END) AS pence,
       count(*) FILTER (WHERE q > 0 AND p > 0) AS counted
FROM lines WHERE regexp_full_match(inv, '[0-9]+') GROUP BY inv HAVING counted > 0;
CREATE TABLE refunds AS
SELECT inv, min(t_local) AS t_local, sum(round(-q * p * 100)) AS pence FROM lines WHERE inv LIKE 'C%' GROUP BY inv;
"""


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(LINES)
    return con


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory, duck: duckdb.DuckDBPyConnection):
    """`storepulse up`, the replay CLI into it, and the dataflow caught up with the whole file."""
    sp = Storepulse(tmp_path_factory.mktemp("retail"), config=CONFIG)
    sp.start()
    out = sp.cli("replay", "online-retail", str(FILE), "--org", "retail", "--speed", "max")
    assert out.returncode == 0, out.stdout + out.stderr
    (orders,), = duck.execute("SELECT count(*) FROM orders").fetchall()
    (refunds,), = duck.execute("SELECT sum(pence) FROM refunds").fetchall()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        f = api(sp, "figures", period="all")
        if (f["paid_orders"], f["refunds"]["amount"]) == (orders, refunds):
            break
        time.sleep(0.2)
    yield sp
    sp.ensure_stopped()


def api(sp: Storepulse, path: str, **params: object) -> dict:
    r = httpx.get(f"{sp.base}/api/v1/orgs/retail/{path}", params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_london_day_matches(retail: Storepulse, duck: duckdb.DuckDBPyConnection) -> None:
    total_orders = duck.execute("SELECT count(*) FROM orders").fetchall()[0][0]
    want = {str(d): (int(g), n) for d, g, n in duck.execute(
        "SELECT CAST(t_local AS DATE), sum(pence), count(*) FROM orders GROUP BY 1").fetchall()}
    want_refunds = {str(d): int(r) for d, r in duck.execute(
        "SELECT CAST(t_local AS DATE), sum(pence) FROM refunds GROUP BY 1").fetchall()}
    span = {"from": "2010-12-01", "to": "2011-12-09", "granularity": "day"}
    got = {m: {p["t"]: p["value"] for p in api(retail, "series", metric=m, **span)["points"]}
           for m in ("gross_revenue", "paid_orders", "refunds", "aov")}
    days = sorted(set(want) | set(want_refunds))
    assert len(days) > 300
    for day in days:
        gross, n = want.get(day, (0, 0))
        aov = (2 * gross + n) // (2 * n) if n else 0  # half up, positive amounts
        assert (got["gross_revenue"][day], got["paid_orders"][day], got["refunds"].get(day, 0), got["aov"][day]) == (
            gross, n, want_refunds.get(day, 0), aov), day
    assert sum(got["paid_orders"].values()) == total_orders == 19_959


def test_repeat_purchase_rate_and_top_products(retail: Storepulse, duck: duckdb.DuckDBPyConnection) -> None:
    (buyers, repeat), = duck.execute(
        "SELECT count(*), count(*) FILTER (WHERE n >= 2) FROM "
        "(SELECT customer, count(*) n FROM orders WHERE customer IS NOT NULL GROUP BY customer)").fetchall()
    summary = api(retail, "customers", period="all", limit=1)["summary"]
    assert (summary["customers"], summary["repeat_customers"]) == (buyers, repeat)
    assert summary["repeat_purchase_rate"] == round(repeat / buyers, 6)
    top = duck.execute(
        "SELECT l.product, sum(l.q * round(l.p * 100)) AS revenue FROM lines l JOIN orders o USING (inv) "
        "WHERE l.q > 0 AND l.p > 0 GROUP BY 1 ORDER BY revenue DESC, product LIMIT 10").fetchall()
    products = api(retail, "products", period="all", sort="revenue", limit=10)["products"]
    assert [(p["product"], p["revenue"]["amount"]) for p in products] == [(k, int(v)) for k, v in top]


def test_30_day_paid_orders_at_every_month_end(retail: Storepulse, duck: duckdb.DuckDBPyConnection) -> None:
    duck.execute("SET TimeZone = 'UTC'")
    london = ZoneInfo("Europe/London")
    for month in range(12, 24):
        year, m = 2010 + (month - 1) // 12, (month - 1) % 12 + 1
        # the midnight ending the month; the window is exactly 30 x 24 h before it, DST or not
        nxt = dt.datetime(year + (m == 12), m % 12 + 1, 1, tzinfo=london).astimezone(dt.UTC)
        (want,), = duck.execute(
            "SELECT count(*) FROM orders WHERE timezone('Europe/London', t_local) > ? AND timezone('Europe/London', t_local) <= ?",
            [nxt - dt.timedelta(days=30), nxt]).fetchall()
        got = api(retail, "quota", at=nxt.isoformat())
        assert got["paid_orders_30d"] == want, nxt
