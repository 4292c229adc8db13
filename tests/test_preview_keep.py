"""The preview columns saved at shutdown and taken back at the next start (ws_gateway/preview_keep.py,
preview_index.py): on SQLite and Redis, a PreviewIndex that built its columns and followed the feed
saves them; writes it never took (made after its feed stopped), then writes to old days, to today, a
record moving day and customers changing; a new PreviewIndex over the same model takes the file, reads
only the records of the days changed since, and answers every rule as the records' path
(ws_gateway/segment_preview.py) does. A file of another mark, or damaged, is not used: built as before."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.changes import Record
from core.config import parse_config
from core.rates import Rates, parse_ecb_csv
from core.records import Cart, Customer, Order, RecordKind, Value
from core.rules import Context, inputs, parse_rule, parse_segments
from state.readmodel import ReadModel
from state.sqlite_readmodel import SqliteReadModel
from tests import preview_random as data
from tests.helpers import wait_for
from tests.test_day_cache import CONFIG
from tests.test_segment_preview_columns import segments, slow
from ws_gateway import preview_index
from ws_gateway.preview_index import PreviewIndex
from ws_gateway.segment_preview import buyers_only

ORG = data.ORG


@contextmanager
def running(model: ReadModel, data_dir: Path, rates: Rates = data.RATES) -> Iterator[PreviewIndex]:
    """A PreviewIndex following the model's feed in its own event loop, its columns ready; stopped
    (its feed closed) on leaving, as `storepulse up` stops it before it saves."""
    index = PreviewIndex(parse_config(CONFIG, {}), model, rates, data_dir)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(index.run(stop)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: index.held(ORG) is not None, 60, "the preview columns")
        yield index
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def answers(index: PreviewIndex, model: ReadModel, seed: int, rules: int = 120) -> int:
    """Random rules over the columns against the records' path over the model; returns the members seen."""
    rnd = random.Random(seed)
    defined = segments(rnd)
    ctx = Context(data.TZ, data.CURRENCY, data.RATES, parse_segments(defined, currency=data.CURRENCY, timezone=data.TZ))
    records: list[Record[Value]] = [*model.records(ORG, Customer), *model.records(ORG, Order), *model.records(ORG, Cart)]
    held = index.held(ORG)
    assert held is not None
    members = 0
    for _ in range(rules):
        raw = data.rule(rnd, list(defined))
        rule = parse_rule(raw, currency=data.CURRENCY, timezone=data.TZ)
        expected = slow(rule, records, ctx)
        got = held.preview(rule, data.NOW, ctx, buyers_only(rule, inputs(rule, ctx.segments), data.NOW, ctx))
        assert got == expected, raw
        members += expected[0]
    return members


def later(records: list[Record[Value]], rnd: random.Random, version: int) -> list[Record[Value]]:
    """Writes after the save: orders rewritten on their day, orders moved to another day, new orders
    today, customers changing (and moving day), carts changing status."""
    today = data._day(data.NOW)
    out: list[Record[Value]] = []

    def add(r: Record[Value], day: str, value: Value) -> None:
        out.append(Record(r.org, version + len(out) + 1, r.kind, r.key, day, value))

    for r in rnd.sample(records, 60):
        v = r.value
        if isinstance(v, Order):
            if rnd.random() < 0.5:
                add(r, r.day, msgspec.structs.replace(v, amount=v.amount + 777))  # the same day
            else:
                t = data.NOW - rnd.randrange(0, 3 * data.DAY)  # paid again: to another day (mostly)
                add(r, data._day(t), msgspec.structs.replace(v, paid=t, placed=t))
        elif isinstance(v, Customer):
            registered = data.NOW - rnd.randrange(0, 5 * data.DAY)
            add(r, data._day(registered), msgspec.structs.replace(v, registered=registered, last_active=data.NOW - 1000))
        elif isinstance(v, Cart):
            add(r, r.day, msgspec.structs.replace(v, status=rnd.choice(("open", "abandoned", "recovered"))))
    people = sorted({r.key for r in records if r.kind == RecordKind.CUSTOMER})
    for i in range(20):  # new orders today, and one of a customer first met today
        who = people[i * 7 % len(people)] if i else "newcomer"
        key = f"s1:today-{i}"
        out.append(Record(ORG, version + len(out) + 1, RecordKind.ORDER, key, today,
                          Order("s1", f"today-{i}", who, "web", data.NOW - 60_000, data.NOW - 60_000, "EUR",
                                1000 + i * 250, 0, False, msgspec.Raw(b'[["p3", 2, 500, ""]]'))))
    return out


def test_columns_saved_are_taken_back_and_caught_up_to_equal_the_records_path(
        stamped: ReadModel, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storepulse.gateway")
    rnd = random.Random(31)
    first = data.records(rnd, 400)
    half = len(first) // 2
    stamped.write(first[:half])
    with running(stamped, tmp_path) as index:
        stamped.write(first[half:])  # through the feed: the columns take them while they run
        wait_for(lambda: _took(index, first), 20, "the feed's records")
        answers(index, stamped, seed=1, rules=30)
    # written after the feed stopped: never in these columns, though their days' stamps moved before the save
    unseen = later(first, random.Random(2), version=10_000)
    stamped.write(unseen)
    index.save()
    path = tmp_path / f"preview-columns-{ORG}.pickle"
    assert path.exists() and "preview columns saved to" in caplog.text
    further = later(first + unseen, random.Random(3), version=20_000)
    stamped.write(further)
    caplog.clear()
    with running(stamped, tmp_path) as again:
        assert "taken from" in caplog.text and " built in " not in caplog.text, caplog.text
        read = _caught_up(caplog.text)
        assert 0 < read < len(first) // 2, (read, caplog.text)  # the changed days' newer records, not all
        assert answers(again, stamped, seed=4) > 0
        # and the feed keeps the taken columns current, as the built ones
        last = later(first, random.Random(5), version=30_000)
        stamped.write(last)
        wait_for(lambda: _took(again, last), 20, "the feed's records after the load")
        answers(again, stamped, seed=6, rules=40)


def _took(index: PreviewIndex, records: list[Record[Value]]) -> bool:
    """Every one of `records` reached the columns (held or applied)."""
    held = index.held(ORG)
    assert held is not None
    with held.lock:
        held._settle()
        cols = held.columns
        for r in records:
            table = cols.customers if r.kind == RecordKind.CUSTOMER else cols.orders if r.kind == RecordKind.ORDER else cols.carts
            key = r.value.customer if isinstance(r.value, Customer) else r.key
            assert table.rows is not None
            i = table.rows.get(key)
            if i is None or table.cols["version"][i] < r.version:
                return False
    return True


def _caught_up(log: str) -> int:
    found = re.search(r"\((\d+) records of (\d+) days changed since", log)
    assert found, log
    return int(found.group(1))


def test_a_file_of_another_mark_or_damaged_is_not_used_and_the_columns_are_built(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storepulse.gateway")
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(data.records(random.Random(8), 200))
    with running(model, tmp_path) as index:
        pass
    index.save()
    path = tmp_path / f"preview-columns-{ORG}.pickle"
    saved = path.read_bytes()
    other_rates = parse_ecb_csv(data.rates_csv().replace("1.", "2.", 1))
    cases: list[tuple[str, Any, str]] = [
        ("other rates", other_rates, "not used"),
        ("cut short", None, "not used: "),
        ("not a pickle", None, "not used: "),
    ]
    for what, rates, said in cases:
        path.write_bytes(saved)
        if what == "cut short":
            path.write_bytes(saved[: len(saved) // 2])
        elif what == "not a pickle":
            path.write_bytes(saved.split(b"\n", 1)[0] + b"\nnot a pickle")
        caplog.clear()
        with running(model, tmp_path, rates or data.RATES) as built:
            assert said in caplog.text and " built in " in caplog.text and "taken from" not in caplog.text, (what, caplog.text)
            if rates is None:
                answers(built, model, seed=9, rules=40)
    # the mark names the read model too: another model's file is not taken
    other = SqliteReadModel(tmp_path / "other.sqlite3")
    other.write(data.records(random.Random(8), 200))
    path.write_bytes(saved)
    caplog.clear()
    with running(other, tmp_path):
        assert "not used" in caplog.text and " built in " in caplog.text, caplog.text
    other.close()
    model.close()


def test_catch_up_reads_nothing_when_nothing_changed(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(data.records(random.Random(12), 100))
    held = preview_index.HeldColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    preview_index.load(model, ORG, held)
    assert held.stamps is not None
    assert preview_index.catch_up(model, ORG, held, held.stamps) == (0, 0)
    model.close()
