"""Dataset replay: the pure mappings on hand-made rows, then the real files of ../shared/data checked
against DuckDB SQL over the same CSV, replayed into a real SQLite log and a real redis-server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import gzip
import io
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.events import Event, Item, Kind, event_from_json
from ingest.replay import DatasetError, Mapped, Summary, append_events, map_file, map_rows, replay
from state.log import EventLog, partition_of
from state.redis_log import RedisEventLog, RedisLogReader
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from storepulse.commands import replay as command
from storepulse.commands.replay import append_mapped
from tests.helpers import SHARED, RedisServer

RETAIL = SHARED / "data" / "online_retail.csv.gz"
REES = SHARED / "data" / "rees46_2019oct_head.csv.gz"
needs_retail = pytest.mark.skipif(not RETAIL.exists(), reason=f"../shared is absent: no data set at {RETAIL}")
needs_rees = pytest.mark.skipif(not REES.exists(), reason=f"../shared is absent: no data set at {REES}")

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
REES_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"


def retail(lines: str) -> Mapped:
    return map_rows("online-retail", "org", "st", csv.reader(io.StringIO(RETAIL_HEADER + lines)))


def rees(lines: str) -> Mapped:
    return map_rows("rees46", "org", "st", csv.reader(io.StringIO(REES_HEADER + lines)))


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000  # type: ignore[misc]


def by_raw(m: Mapped) -> dict[str, Event]:
    return {e.raw_id: e for e in m.events}


# --- online-retail: the pure mapping -------------------------------------------------------------


def test_invoice_is_one_paid_order_with_exact_half_up_pence() -> None:
    m = retail(
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536365,P1,HALF A PENNY,1,2010-12-01 08:26:00,0.005,17850.0,United Kingdom\n"
        "536365,P2,FLOAT WOULD SAY 100,1,2010-12-01 08:26:00,1.005,17850.0,United Kingdom\n"
        "536365,P3,THREE DECIMALS,3,2010-12-01 08:26:00,0.125,17850.0,United Kingdom\n"
    )
    (e,) = m.events
    # 6 x 2.55 = 15.30 -> 1530; 0.005 -> 0.5 p -> 1; 1.005 -> 100.5 p -> 101 (float: 100.49999 -> 100);
    # 3 x 0.125 = 0.375 -> 37.5 p -> 38
    assert (e.kind, e.amount, e.currency, e.order, e.refund, e.customer) == (
        Kind.ORDER_PAID, 1530 + 1 + 101 + 38, "GBP", "536365", None, "17850")
    assert e.id == "replay:st:invoice:536365" and (e.org, e.store, e.raw_id) == ("org", "st", "536365")
    assert e.time == ms(2010, 12, 1, 8, 26)  # winter: London is UTC
    assert e.items == (
        Item("85123A", 6, 255, name="WHITE HANGING HEART T-LIGHT HOLDER"),
        Item("P1", 1, 1, name="HALF A PENNY"),
        Item("P2", 1, 101, name="FLOAT WOULD SAY 100"),
        Item("P3", 3, 13, name="THREE DECIMALS"),  # unit price 12.5 p rounds half up
    )
    assert e.attrs == {"country": "United Kingdom"}
    assert (m.rows, sum(m.skipped.values()), m.empty_invoices) == (4, 0, 0)


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2011-03-26 10:00:00", ms(2011, 3, 26, 10, 0)),  # last day of GMT
        ("2011-03-27 10:00:00", ms(2011, 3, 27, 9, 0)),  # BST from 01:00 UTC on 27 March
        ("2011-07-01 12:34:00", ms(2011, 7, 1, 11, 34)),
        ("2011-10-29 10:00:00", ms(2011, 10, 29, 9, 0)),  # last day of BST
        ("2011-10-30 10:00:00", ms(2011, 10, 30, 10, 0)),  # GMT again
        ("2011-10-30 01:30:00", ms(2011, 10, 30, 0, 30)),  # happens twice: the first (BST) one
    ],
)
def test_invoice_date_is_london_time(local: str, utc: int) -> None:
    (e,) = retail(f"540001,X,X,1,{local},1.00,,United Kingdom\n").events
    assert e.time == utc


def test_order_time_is_its_earliest_line_wherever_the_lines_are() -> None:
    m = retail(
        "536591,A1,ONE,1,2010-12-01 16:58:00,1.00,14606.0,United Kingdom\n"
        "536592,B1,OTHER,1,2010-12-01 16:57:30,1.00,,United Kingdom\n"
        "536591,A2,TWO,2,2010-12-01 16:57:00,1.00,14606.0,United Kingdom\n"
    )
    a, b = m.events  # time order: 536591 (16:57) before 536592 (16:57:30)
    assert (a.raw_id, a.time, a.amount, len(a.items)) == ("536591", ms(2010, 12, 1, 16, 57), 300, 2)
    assert (b.raw_id, b.customer) == ("536592", None)  # no CustomerID: a guest


def test_c_invoice_is_a_refund_of_positive_pence_linked_to_no_order() -> None:
    m = retail(
        "C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527.0,United Kingdom\n"
        "C536379,22556,PLASTERS IN TIN,-12,2010-12-01 09:40:00,1.65,14527.0,United Kingdom\n"
        "C536379,P1,HALF A PENNY,-1,2010-12-01 09:41:00,0.005,14527.0,United Kingdom\n"
    )
    (e,) = m.events
    assert (e.kind, e.refund, e.order, e.amount, e.customer, e.id) == (
        Kind.ORDER_REFUNDED, "C536379", None, 2750 + 1980 + 1, "14527", "replay:st:invoice:C536379")
    assert e.time == ms(2010, 12, 1, 9, 40)
    assert [(i.product, i.qty, i.unit_price) for i in e.items] == [("D", 1, 2750), ("22556", 12, 165), ("P1", 1, 1)]


def test_lines_and_invoices_that_fit_no_rule_are_skipped_by_reason() -> None:
    m = retail(
        "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom\n"
        "536589,21777,,-10,2010-12-01 16:50:00,0.0,,United Kingdom\n"  # stock adjustment only: no order
        "536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom\n"  # a free line only: no order
        "536600,X1,PAID,2,2010-12-01 17:00:00,1.50,,United Kingdom\n"
        "536600,X2,FREE,1,2010-12-01 17:00:00,0,,United Kingdom\n"
        "C536601,X1,BACK,3,2010-12-01 17:05:00,1.50,,United Kingdom\n"  # a refund line of + quantity
        "C536601,X1,BACK,-1,2010-12-01 17:05:00,1.50,,United Kingdom\n"
        "536602,X1,BAD,two,2010-12-01 17:06:00,1.50,,United Kingdom\n"
        "536603,X1,BAD,2,2010-12-01 25:06:00,1.50,,United Kingdom\n"
        "536604,X1,BAD,2,2010-12-01 17:06:00,1.5x,,United Kingdom\n"
        "536605,X1,BAD,2,2010-12-01 17:06:00,1.50,17850.5,United Kingdom\n"
        "X536606,X1,ODD,2,2010-12-01 17:06:00,1.50,,United Kingdom\n"
        "536607,X1,SHORT\n"
    )
    assert [(e.raw_id, e.kind, e.amount) for e in m.events] == [
        ("536600", Kind.ORDER_PAID, 300), ("C536601", Kind.ORDER_REFUNDED, 150)]
    assert m.skipped == Counter({
        "adjustment invoice (InvoiceNo starts with 'A')": 1,
        "order line with Quantity <= 0": 1,
        "order line with UnitPrice <= 0": 2,
        "refund line with Quantity >= 0": 1,
        "malformed Quantity": 1,
        "malformed InvoiceDate": 1,
        "malformed UnitPrice": 1,
        "malformed CustomerID": 1,
        "InvoiceNo neither digits nor 'C' + digits": 1,
        "malformed row (wrong number of columns)": 1,
    })
    assert (m.rows, m.empty_invoices) == (13, 2)


def test_lines_beyond_the_limits_are_skipped_by_reason() -> None:
    m = retail(
        "536700,X1,BULK,1000001,2010-12-01 17:00:00,1.00,,United Kingdom\n"  # over MAX_QTY
        "536700,X2,DEAR,1,2010-12-01 17:00:00,10000000000.01,,United Kingdom\n"  # 1,000,000,000,001 pence
        "536700,X3,BOTH,1000000,2010-12-01 17:00:00,10000.01,,United Kingdom\n"  # each fits, their product not
        "536700,X4,OK,1000000,2010-12-01 17:00:00,10000.00,,United Kingdom\n"  # exactly the largest amount
    )
    assert [(e.raw_id, e.amount) for e in m.events] == [("536700", 10**12)]
    assert m.skipped == Counter({"Quantity out of range": 1, "UnitPrice out of range": 1,
                                 "Quantity x UnitPrice out of range": 1})
    r = rees("2019-10-01 00:00:00 UTC,view,1,2,c,b,10000000000.01,u1,s1\n"
             "2019-10-01 00:00:01 UTC,view,1,2,c,b,10000000000.00,u1,s1\n")
    assert [e.items[0].unit_price for e in r.events] == [10**12] and r.skipped == Counter({"price out of range": 1})


def test_an_empty_invoice_number_is_skipped_with_its_reason_even_on_the_first_line() -> None:
    m = retail(",X,X,1,2010-12-01 08:26:00,1.00,,United Kingdom\n" * 2 + "536365,X,X,1,2010-12-01 08:26:00,1.00,,UK\n")
    assert m.skipped == Counter({"InvoiceNo neither digits nor 'C' + digits": 2}) and len(m.events) == 1


@pytest.mark.parametrize(("raw", "customer"), [("17850.0", "17850"), ("12346", "12346"), ("", None), (" 13047.0 ", "13047")])
def test_customer_id_is_an_integer_string_or_a_guest(raw: str, customer: str | None) -> None:
    (e,) = retail(f"536365,X,X,1,2010-12-01 08:26:00,1.00,{raw},United Kingdom\n").events
    assert e.customer == customer


def test_wrong_file_for_the_dataset_says_what_is_missing() -> None:
    with pytest.raises(DatasetError, match="not a online-retail file: the header lacks InvoiceNo"):
        map_rows("online-retail", "o", "s", csv.reader(io.StringIO(REES_HEADER)))
    with pytest.raises(DatasetError, match="it is empty"):
        map_rows("rees46", "o", "s", [])


# --- rees46: the pure mapping --------------------------------------------------------------------

S1 = "72d76fde-8bb3-4e00-8c23-a032dfed738c"
S2 = "9333dfbd-b87a-4708-9857-6336556b0fcc"


def test_views_and_cart_adds() -> None:
    m = rees(
        f"2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,{S1}\n"
        f"2019-10-01 00:00:05 UTC,cart,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,541312140,{S1}\n"
    )
    view, cart = m.events
    assert (view.kind, view.time, view.visitor, view.customer, view.cart, view.amount, view.currency) == (
        Kind.PRODUCT_VIEWED, ms(2019, 10, 1, 0, 0), "541312140", "541312140", None, 0, "USD")
    assert view.items == (Item("44600062", 1, 3579, brand="shiseido"),) and view.attrs == {"session": S1}
    assert (cart.kind, cart.cart, cart.amount, cart.customer) == (Kind.CART_ITEM_ADDED, S1, 3320, "541312140")
    assert cart.items == (Item("3900821", 1, 3320, category="appliances.environment.water_heater", brand="aqua"),)
    assert view.id.startswith("replay:st:view:") and cart.id.startswith("replay:st:cart:")


def test_purchases_of_a_session_are_one_order_at_the_first_purchase() -> None:
    m = rees(
        f"2019-10-01 02:22:11 UTC,purchase,1004750,205,electronics.smartphone,samsung,197.43,555110488,{S1}\n"
        f"2019-10-01 02:23:00 UTC,view,1004856,205,electronics.smartphone,samsung,130.76,555110488,{S1}\n"
        f"2019-10-01 02:25:04 UTC,purchase,1004856,205,electronics.smartphone,samsung,130.76,555110488,{S1}\n"
        f"2019-10-01 02:26:05 UTC,purchase,1004750,205,electronics.smartphone,samsung,197.43,555110488,{S1}\n"
        f"2019-10-01 02:26:05 UTC,purchase,1004750,205,electronics.smartphone,samsung,197.43,555110488,{S1}\n"
        f"2019-10-01 02:24:00 UTC,purchase,4100348,206,,sega,36.01,523913437,{S2}\n"
    )
    assert [e.kind for e in m.events] == [Kind.ORDER_PAID, Kind.PRODUCT_VIEWED, Kind.ORDER_PAID]
    o1, _, o2 = m.events
    assert (o1.id, o1.order, o1.cart, o1.customer, o1.time) == (
        f"replay:st:session:{S1}", S1, S1, "555110488", ms(2019, 10, 1, 2, 22, 11))
    # the exact duplicate line (02:26:05 twice) counts once; the same phone bought twice is qty 2
    assert o1.amount == 19743 * 2 + 13076
    assert o1.items == (Item("1004750", 2, 19743, category="electronics.smartphone", brand="samsung"),
                        Item("1004856", 1, 13076, category="electronics.smartphone", brand="samsung"))
    assert (o2.order, o2.amount, o2.items) == (S2, 3601, (Item("4100348", 1, 3601, brand="sega"),))


def test_exact_duplicate_lines_share_an_id_and_nothing_else_does() -> None:
    line = f"2019-10-01 02:25:40 UTC,view,1307116,2053013558920217191,computers.notebook,hp,463.07,548049635,{S1}\n"
    m = rees(line + line + line.replace("463.07", "463.08") + line.replace(S1, S2))
    ids = [e.id for e in m.events]
    assert ids[0] == ids[1] and len(set(ids)) == 3
    assert rees(line).events[0].id == ids[0]  # deterministic across runs


def test_rees46_rows_that_cannot_be_used_are_skipped_by_reason() -> None:
    m = rees(
        f"2019-10-01 00:00:00 UTC,remove_from_cart,1,2,,,1.00,5,{S1}\n"
        f"2019-10-01 00:00:00,view,1,2,,,1.00,5,{S1}\n"
        f"2019-10-01 00:00:00 UTC,view,1,2,,,-1.00,5,{S1}\n"
        f"2019-10-01 00:00:00 UTC,view,,2,,,1.00,5,{S1}\n"
        f"2019-10-01 00:00:00 UTC,view,1,2,,,1.00,,{S1}\n"
        "2019-10-01 00:00:00 UTC,cart,1,2,,,1.00,5,\n"
        "2019-10-01 00:00:00 UTC,view,1,2,,,1.00,5,\n"  # a view needs no session
        "2019-10-01 00:00:00 UTC,view\n"
    )
    assert len(m.events) == 1 and m.events[0].attrs == {}
    assert m.skipped == Counter({
        "event_type neither view, cart nor purchase": 1, "malformed event_time": 1, "malformed price": 1,
        "missing product_id": 1, "missing user_id": 1, "cart or purchase without user_session": 1,
        "malformed row (wrong number of columns)": 1,
    })


# --- the driver on small files -------------------------------------------------------------------

SMALL_REES = REES_HEADER + "".join(
    f"2019-10-01 00:{i // 60:02d}:{i % 60:02d} UTC,view,{1000 + i % 7},2,,b,{i}.99,{500 + i % 13},s{i % 13}\n"
    for i in range(300)
)


def test_plain_and_gzip_csv_map_the_same(tmp_path: Path) -> None:
    plain, gz = tmp_path / "a.csv", tmp_path / "a.csv.gz"
    plain.write_text(SMALL_REES)
    gz.write_bytes(gzip.compress(SMALL_REES.encode()))
    seen: list[tuple[str, int, int]] = []
    a = map_file(plain, "rees46", "o", "s", progress=lambda *p: seen.append(p))
    b = map_file(gz, "rees46", "o", "s")
    assert a.events == b.events and len(a.events) == 300
    assert seen[-1] == ("reading", plain.stat().st_size, plain.stat().st_size)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        map_file(empty, "rees46", "o", "s")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(SMALL_REES.encode())[:15])  # not even the header line survives
    with pytest.raises(DatasetError, match="unreadable after 0 rows"):
        map_file(cut, "rees46", "o", "s")


def test_speed_paces_the_appends(tmp_path: Path) -> None:
    events = rees(SMALL_REES.split("\n", 1)[1]).events

    async def go(speed: float | None) -> tuple[float, Summary, list[int]]:
        log = SqliteEventLog(tmp_path / f"log-{speed}.sqlite3")
        summary, done = Summary(), []
        t = time.perf_counter()
        await append_events(log, events, summary, speed=speed, progress=lambda phase, d, total: done.append(d))
        took = time.perf_counter() - t
        await log.close()
        return took, summary, done

    took, summary, done = asyncio.run(go(1000))  # 300 events at 1000/s: 30 batches of 100, 0.3 s
    assert (summary.appended, summary.duplicates) == (300, 0)
    assert done == [0, 100, 200, 300]
    assert 0.19 <= took < 5
    took, summary, done = asyncio.run(go(None))
    assert done == [0, 300] and summary.appended == 300


class GcProbeLog:
    """An in-memory log that notes whether the cyclic garbage collector was on during each append."""

    partitions = 4

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.collector_on: list[bool] = []

    async def append(self, events: list[Event]) -> list[bool]:
        self.collector_on.append(gc.isenabled())
        out = [(e.org, e.id) not in self.seen for e in events]
        self.seen.update((e.org, e.id) for e in events)
        return out

    async def close(self) -> None:
        pass


def test_the_command_pauses_the_cyclic_collector_for_a_bulk_append_and_restores_it() -> None:
    events = rees(SMALL_REES.split("\n", 1)[1]).events
    assert gc.isenabled()
    for speed, collector in ((None, False), (1e9, True)):  # paced: it may run for hours, the collector stays on
        log, summary = GcProbeLog(), Summary()
        asyncio.run(append_mapped(log, events, summary, speed))
        assert set(log.collector_on) == {collector} and gc.isenabled()
        assert (summary.appended, summary.duplicates) == (300, 0)


# --- the command ---------------------------------------------------------------------------------

CONFIG = """
[orgs.shop]
timezone = "Europe/London"
currency = "GBP"
token = "shop-token-0123456789"

[orgs.shop.stores.uk]
provider = "events"
secret = "s"

[orgs.other]
currency = "USD"
token = "other-token-0123456789"

[orgs.other.stores.us]
provider = "stripe"
secret = "whsec_x"
"""


def figure(out: str, label: str) -> int:
    """A number of the printed summary, e.g. figure(out, "appended")."""
    m = re.search(rf"^  {label} +([0-9,]+)", out, re.M)
    assert m, f"no {label!r} in the summary:\n{out}"
    return int(m.group(1).replace(",", ""))


def cli(*argv: str) -> int:
    ap = argparse.ArgumentParser(prog="storepulse")
    command.register(ap.add_subparsers(dest="command", required=True))
    return command.run(ap.parse_args(["replay", *argv]))


def test_command_replays_once_and_explains_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "storepulse.toml"
    cfg.write_text(CONFIG)
    data = tmp_path / "small.csv"
    data.write_text(SMALL_REES)
    common = ["--config", str(cfg), "--data-dir", str(tmp_path / "d")]
    assert cli("rees46", str(data), "--org", "shop", *common) == 0
    out = capsys.readouterr().out
    assert "store uk," in out and (figure(out, "rows read"), figure(out, "appended"), figure(out, "duplicates")) == (300, 300, 0)
    assert cli("rees46", str(data), "--org", "shop", "--speed", "max", *common) == 0
    out = capsys.readouterr().out
    assert (figure(out, "appended"), figure(out, "duplicates")) == (0, 300)
    rows = SqliteLogReader(tmp_path / "d" / "log.sqlite3").read(partition_of("shop", 4), None, 1000)
    assert len(rows) == 300 and {event_from_json(b).store for _, b in rows} == {"uk"}

    assert cli("rees46", str(data), "--org", "nope", *common) == 2
    assert "no organisation 'nope'" in capsys.readouterr().err
    assert cli("rees46", str(data), "--org", "shop", "--store", "us", *common) == 2
    assert "belongs to organisation 'other'" in capsys.readouterr().err
    assert cli("rees46", str(tmp_path / "missing.csv"), "--org", "shop", *common) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli("online-retail", str(data), "--org", "shop", *common) == 2
    assert "the header lacks InvoiceNo" in capsys.readouterr().err
    assert cli("rees46", str(data), "--org", "shop", "--store", "elsewhere", *common) == 0
    assert "not in the config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("rees46", str(data), "--org", "shop", "--speed", "-3", *common)
    assert "--speed: expected events per second (a positive number) or 'max'" in capsys.readouterr().err


def test_command_refuses_an_event_beyond_the_limits_says_so_and_goes_on(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Invoice 536800's lines each fit, their sum (1,200,000,000,000 pence) does not: the event is
    refused at the append, reported, never appended; the other invoice is, and the command ends 0."""
    cfg = tmp_path / "storepulse.toml"
    cfg.write_text(CONFIG)
    data = tmp_path / "retail.csv"
    data.write_text(RETAIL_HEADER
                    + "536800,X1,BULK,1000000,2010-12-01 17:00:00,6000.00,,United Kingdom\n" * 2
                    + "536801,X1,ONE,2,2010-12-01 17:01:00,1.50,,United Kingdom\n")
    assert cli("online-retail", str(data), "--org", "shop", "--config", str(cfg), "--data-dir", str(tmp_path / "d")) == 0
    out = capsys.readouterr().out
    assert (figure(out, "events"), figure(out, "appended"), figure(out, "refused")) == (2, 1, 1)
    assert ("  refused                  1  (out of range, docs/operations.md \"Limits\": not appended)\n"
            "    replay:uk:invoice:536800: amount is over the largest amount storepulse takes (1000000000000 minor "
            "units), got 1200000000000\n") in out
    rows = SqliteLogReader(tmp_path / "d" / "log.sqlite3").read(partition_of("shop", 4), None, 1000)
    assert [event_from_json(b).raw_id for _, b in rows] == ["536801"]


# --- the real files: figures equal DuckDB's, replays are idempotent ------------------------------


def read_log(reader: SqliteLogReader | RedisLogReader, org: str) -> list[Event]:
    events, after = [], None
    while rows := reader.read(partition_of(org, reader.partitions), after, 10_000):
        events += [event_from_json(body) for _, body in rows]
        after = rows[-1][0]
    reader.close()
    return [e for e in events if e.org == org]


def duckdb_retail() -> dict[str, tuple[str, int, int, str | None, int]]:
    """invoice -> (kind, UTC ms, pence, customer, counted lines), in SQL over the CSV, for every invoice
    with a counted line."""
    import duckdb

    rows = duckdb.sql(f"""
        WITH lines AS (
            SELECT InvoiceNo AS inv,
                   CASE WHEN regexp_full_match(InvoiceNo, '[0-9]+') THEN 'order.paid'
                        WHEN regexp_full_match(InvoiceNo, 'C[0-9]+') THEN 'order.refunded' END AS kind,
                   CAST(Quantity AS BIGINT) AS q,
                   CAST(UnitPrice AS DECIMAL(18, 6)) AS p,
                   epoch_ms(timezone('Europe/London', strptime(InvoiceDate, '%Y-%m-%d %H:%M:%S'))) AS t,
                   CAST(CAST(NULLIF(CustomerID, '') AS DECIMAL(18, 1)) AS BIGINT) AS customer
            FROM read_csv('{RETAIL}', header = true, all_varchar = true)
        ), counted AS (
            SELECT *, (kind = 'order.paid' AND q > 0 AND p > 0) OR (kind = 'order.refunded' AND q < 0 AND p > 0) AS ok
            FROM lines WHERE kind IS NOT NULL
        )
        SELECT inv, any_value(kind), min(t),
               sum(CASE WHEN ok THEN floor(abs(q) * p * 100 + 0.5) END)::BIGINT,
               any_value(customer), count(*) FILTER (WHERE ok)
        FROM counted GROUP BY inv HAVING bool_or(ok)
    """).fetchall()
    return {inv: (kind, t, pence, None if c is None else str(c), n) for inv, kind, t, pence, c, n in rows}


def replay_into(open_log: Callable[[], EventLog], path: Path, dataset: str, org: str, store: str) -> Summary:
    """`replay` into a log opened (and closed) in its own event loop, as the CLI runs it."""
    async def go() -> Summary:
        log = open_log()
        try:
            return await replay(path, dataset, log, org, store)
        finally:
            await log.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def retail_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Summary]]:
    if not RETAIL.exists():
        pytest.skip(f"../shared is absent: no data set at {RETAIL}")
    path = tmp_path_factory.mktemp("retail") / "log.sqlite3"

    yield path, replay_into(lambda: SqliteEventLog(path), RETAIL, "online-retail", "retail", "uk")


@needs_retail
def test_online_retail_in_the_log_equals_sql_over_the_file(retail_sqlite: tuple[Path, Summary]) -> None:
    import duckdb

    path, summary = retail_sqlite
    events = read_log(SqliteLogReader(path), "retail")
    ours = {(e.order or e.refund): (e.kind.value, e.time, e.amount, e.customer, len(e.items)) for e in events}
    sql = duckdb_retail()
    assert ours == sql
    assert len(events) == summary.events == summary.appended == len(sql) and summary.duplicates == 0
    paid = [e for e in events if e.kind is Kind.ORDER_PAID]
    refunds = [e for e in events if e.kind is Kind.ORDER_REFUNDED]
    assert (len(paid), sum(e.amount for e in paid)) == (
        sum(1 for v in sql.values() if v[0] == "order.paid"), sum(v[2] for v in sql.values() if v[0] == "order.paid"))
    assert (len(refunds), sum(e.amount for e in refunds)) == (
        sum(1 for v in sql.values() if v[0] == "order.refunded"), sum(v[2] for v in sql.values() if v[0] == "order.refunded"))
    assert [e.time for e in events] == sorted(e.time for e in events)  # appended in time order
    # every line is an item, or skipped with a reason, or a counted line of an invoice: nothing is lost
    (lines, a_lines, zero_or_neg) = duckdb.sql(f"""
        SELECT count(*), count(*) FILTER (WHERE InvoiceNo LIKE 'A%'),
               count(*) FILTER (WHERE regexp_full_match(InvoiceNo, '[0-9]+')
                                AND (CAST(Quantity AS BIGINT) <= 0 OR CAST(UnitPrice AS DECIMAL(18, 6)) <= 0))
        FROM read_csv('{RETAIL}', header = true, all_varchar = true)""").fetchall()[0]
    assert summary.rows == lines == 541_909
    assert summary.skipped["adjustment invoice (InvoiceNo starts with 'A')"] == a_lines
    assert summary.skipped["order line with Quantity <= 0"] + summary.skipped["order line with UnitPrice <= 0"] == zero_or_neg
    assert sum(len(e.items) for e in events) + sum(summary.skipped.values()) == lines


@needs_retail
def test_replaying_online_retail_again_appends_nothing(retail_sqlite: tuple[Path, Summary]) -> None:
    path, first = retail_sqlite

    second = replay_into(lambda: SqliteEventLog(path), RETAIL, "online-retail", "retail", "uk")
    assert (second.events, second.appended, second.duplicates) == (first.events, 0, first.events)
    with contextlib.closing(sqlite3.connect(path)) as db:  # the log alone holds this org: count its rows without decoding them
        assert db.execute("SELECT count(*), count(DISTINCT id) FROM events WHERE org = 'retail'").fetchall() == [
            (first.events, first.events)]


def duckdb_rees_orders() -> dict[str, tuple[int, int, str, int]]:
    """session -> (UTC ms of its first purchase, cents, user, purchased lines), over distinct lines."""
    import duckdb

    rows = duckdb.sql(f"""
        SELECT user_session,
               epoch_ms(min(strptime(event_time, '%Y-%m-%d %H:%M:%S UTC'))),
               sum(floor(CAST(price AS DECIMAL(18, 6)) * 100 + 0.5))::BIGINT,
               any_value(user_id), count(*)
        FROM (SELECT DISTINCT * FROM read_csv('{REES}', header = true, all_varchar = true))
        WHERE event_type = 'purchase' GROUP BY user_session
    """).fetchall()
    return {s: (t, cents, user, n) for s, t, cents, user, n in rows}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis-replay"))
    yield server.url
    server.stop()


@needs_rees
def test_rees46_replayed_into_redis_equals_sql_and_collapses_duplicates(redis_url: str) -> None:
    import duckdb

    def once() -> Summary:
        return replay_into(lambda: RedisEventLog(redis_url), REES, "rees46", "rees", "web")

    first, second = once(), once()
    (lines, distinct_lines, view_cart) = duckdb.sql(f"""
        SELECT (SELECT count(*) FROM read_csv('{REES}', header = true, all_varchar = true)),
               count(*), count(*) FILTER (WHERE event_type IN ('view', 'cart'))
        FROM (SELECT DISTINCT * FROM read_csv('{REES}', header = true, all_varchar = true))""").fetchall()[0]
    orders = duckdb_rees_orders()
    assert first.rows == lines == 17_433 and not first.skipped
    assert first.events == view_cart + (lines - distinct_lines) + len(orders)  # duplicates collapse in the log
    assert (first.appended, first.duplicates) == (view_cart + len(orders), lines - distinct_lines)
    assert (second.appended, second.duplicates) == (0, first.events)
    events = read_log(RedisLogReader(redis_url), "rees")
    assert len(events) == first.appended and len({e.id for e in events}) == len(events)
    ours = {e.order: (e.time, e.amount, e.customer, sum(i.qty for i in e.items)) for e in events if e.kind is Kind.ORDER_PAID}
    assert ours == orders
    kinds = Counter(e.kind for e in events)
    sql_kinds = dict(duckdb.sql(f"""
        SELECT event_type, count(*) FROM (SELECT DISTINCT * FROM read_csv('{REES}', header = true, all_varchar = true))
        GROUP BY event_type""").fetchall())
    assert (kinds[Kind.PRODUCT_VIEWED], kinds[Kind.CART_ITEM_ADDED]) == (sql_kinds["view"], sql_kinds["cart"])


@needs_rees
def test_command_replays_into_redis(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "storepulse.toml"
    cfg.write_text(CONFIG)
    common = ["--config", str(cfg), "--redis", redis_url, "--org", "other"]
    assert cli("rees46", str(REES), *common) == 0
    assert figure(capsys.readouterr().out, "appended") == 17_414
    assert cli("rees46", str(REES), *common) == 0
    out = capsys.readouterr().out
    assert (figure(out, "appended"), figure(out, "duplicates")) == (0, 17_419) and "store us," in out
