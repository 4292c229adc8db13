"""Truth on real data for segments: the UCI Online Retail file (../shared/data, SOURCES.md) mapped by
the replay's own mapper (ingest/replay.py, what `storepulse replay online-retail` appends) and
folded by the organisation's state (flows/organisation.py, what the dataflow runs per batch), with
segments defined first through control events. The members of predefined and custom segments equal
an independent DuckDB query over the file as of `as_of`, and the whole history of entries and exits
of {"spent": {"gte": "1000.00", "within": "30d"}} equals an independent simulation.

In-process, not through `storepulse up` (tests/test_e2e_segments.py drives that path): the whole file
folds in seconds here, where a replay through the HTTP log takes minutes on this machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from core.changes import Record
from core.config import parse_config
from core.definitions import put_event
from core.events import Event, Kind
from core.segment_records import SegmentChange
from flows.organisation import Organisation
from ingest.replay import map_file
from tests.helpers import RETAIL_TOML, SHARED

FILE = SHARED / "data" / "online_retail.csv.gz"
pytestmark = pytest.mark.skipif(not FILE.exists(), reason=f"../shared is absent: no {FILE}")

DAY = 86_400_000
SEGMENTS = {
    "spent_1000_30d": {"spent": {"gte": "1000.00", "within": "30d"}},
    "spent_500_90d": {"spent": {"gte": "500.00", "within": "90d"}},
    "orders_3": {"orders": {"gte": 3}},
    "bought_heart": {"bought_product": {"gte": 1, "product": "85123A"}},  # WHITE HANGING HEART T-LIGHT HOLDER
    "last_order_90d_ago": {"last_order_at": {"before": "90d"}},
    "order_over_500": {"order_value": {"gte": "500.00"}},
}

# The replay mapping (ingest/replay.py's docstring), written as SQL from its text.
SQL = f"""
CREATE TABLE lines AS
SELECT InvoiceNo AS inv, StockCode AS product, CAST(Quantity AS BIGINT) AS q, CAST(UnitPrice AS DECIMAL(18, 6)) AS p,
       CASE WHEN CustomerID = '' THEN NULL ELSE CAST(CAST(CAST(CustomerID AS DOUBLE) AS BIGINT) AS VARCHAR) END AS customer,
       epoch_ms(timezone('Europe/London', strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S'))) AS t
FROM read_csv('{FILE}', header = true, all_varchar = true);
CREATE TABLE orders AS
SELECT inv, min(t) AS t, any_value(customer) AS customer,
       sum(CASE WHEN q > 0 AND p > 0 THEN round(q * p * 100) ELSE 0 END) AS pence,
       count(*) FILTER (WHERE q > 0 AND p > 0) AS counted,
       bool_or(product = '85123A' AND q > 0 AND p > 0) AS heart
FROM lines WHERE regexp_full_match(inv, '[0-9]+') GROUP BY inv HAVING counted > 0;
"""


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(SQL)
    return con


@pytest.fixture(scope="module")
def replayed() -> tuple[Organisation, list[Record], int]:
    """The organisation after the whole file, then one day more of watermark: (state, every segment
    change emitted, as_of)."""
    org = Organisation.new(parse_config(RETAIL_TOML, {}).orgs["retail"])
    definitions = [put_event("retail", "segment", s, {"name": s, "rule": rule}, 0, f"d{i}")
                   for i, (s, rule) in enumerate(SEGMENTS.items())]
    events = map_file(FILE, "online-retail", "retail", "uk").events
    changes: list[Record] = []
    for batch in batches([*definitions, *events], 500):
        changes += [c for c in org.apply_all(batch) if isinstance(c, Record) and isinstance(c.value, SegmentChange)]
    end = max(e.time for e in events) + DAY + org.lateness
    changes += [c for c in org.apply_all([Event("end", Kind.PAGE_VIEWED, "retail", "uk", end, visitor="nobody")])
                if isinstance(c, Record) and isinstance(c.value, SegmentChange)]
    assert org.watermark is not None
    return org, changes, org.watermark


def batches(events: list[Event], size: int) -> Iterator[list[Event]]:
    for i in range(0, len(events), size):
        yield events[i:i + size]


def members(duck: duckdb.DuckDBPyConnection, where: str, having: str, as_of: int) -> list[str]:
    return sorted(c for (c,) in duck.execute(
        f"SELECT customer FROM orders WHERE customer IS NOT NULL AND t <= {as_of} {where} "
        f"GROUP BY customer HAVING {having}").fetchall())


def test_members_equal_sql_as_of(replayed: tuple[Organisation, list[Record], int], duck: duckdb.DuckDBPyConnection) -> None:
    org, _, as_of = replayed
    want = {
        "spent_1000_30d": members(duck, f"AND t > {as_of - 30 * DAY}", "sum(pence) >= 100000", as_of),
        "spent_500_90d": members(duck, f"AND t > {as_of - 90 * DAY}", "sum(pence) >= 50000", as_of),
        "orders_3": members(duck, "", "count(*) >= 3", as_of),
        "bought_heart": members(duck, "", "bool_or(heart)", as_of),
        "last_order_90d_ago": members(duck, "", f"max(t) <= {as_of - 90 * DAY}", as_of),
        "order_over_500": members(duck, "", "max(pence) >= 50000", as_of),
        "repeat_buyers": members(duck, "", "count(*) >= 2", as_of),
        "one_time_buyers": members(duck, "", "count(*) = 1", as_of),
    }
    for segment, customers in want.items():
        assert customers, f"{segment}: the query finds nobody; the comparison would prove nothing"
        assert org.segments.members(segment) == customers, segment


def simulate(duck: duckdb.DuckDBPyConnection, within: int, pence: int) -> list[tuple[str, str, int, bool]]:
    """{"spent": {"gte": pence, "within": within}} per customer, independently: the rule's value at
    every instant an order enters (its time) or leaves (its time + within) the window, in time order;
    a change wherever it flips. (customer, change, at, caused by an order rather than by time)."""
    rows = duck.execute("SELECT customer, t, pence FROM orders WHERE customer IS NOT NULL ORDER BY customer, t").fetchall()
    by_customer: dict[str, list[tuple[int, int]]] = {}
    for customer, t, amount in rows:
        by_customer.setdefault(customer, []).append((t, int(amount)))
    out = []
    for customer, orders in by_customer.items():
        instants = sorted({t for t, _ in orders} | {t + within for t, _ in orders})
        member = False
        for at in instants:
            now = sum(a for t, a in orders if at - within < t <= at) >= pence
            if now != member:
                out.append((customer, "entered" if now else "exited", at, any(t == at for t, _ in orders)))
                member = now
    return sorted(out)


def test_the_history_of_a_windowed_spend_equals_a_simulation(replayed: tuple[Organisation, list[Record], int],
                                                            duck: duckdb.DuckDBPyConnection) -> None:
    _, changes, as_of = replayed
    got = sorted((v.customer, v.change, v.at, v.cause != "time") for c in changes
                 if (v := c.value).segment == "spent_1000_30d")
    want = [c for c in simulate(duck, 30 * DAY, 100000) if c[2] <= as_of]
    assert len(want) > 100
    assert got == want
