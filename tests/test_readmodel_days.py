"""Records by day and their day stamps (state/day_stamps.py), the same on both read models: a day range
reads what a full read filtered by day gives, a record that moves day leaves its old day, a day's stamp
changes exactly when an applied write changes that day's records (a replayed older version changes
none). And the Redis model's move from the previous layout (one hash per kind) into days, on open."""

from __future__ import annotations

import random
import threading

import pytest
import redis
from msgspec import Raw

from core.changes import Record
from core.figures import OPEN_END
from core.records import Cart, Order
from core.segment_records import SegmentChange, SegmentMember
from state import day_stamps, sqlite_readmodel
from state.day_stamps import DayStamped
from state.readmodel import ReadModel
from state.redis_readmodel import LAYOUT_KEY, RedisReadModel
from tests.helpers import RedisServer

DAYS = [f"2026-11-{d:02d}" for d in range(1, 31)]


@pytest.fixture
def model(stamped: ReadModel) -> ReadModel:
    return stamped  # tests/conftest.py: SQLite's, then Redis's


def order(i: int, version: int, day: str, org: str = "a", amount: int = 1000) -> Record[Order]:
    return Record(org, version, Order.KIND, f"s:o{i}", day, Order(
        "s", f"o{i}", f"c{i % 7}", "web", 1764547200000, 1764547200000, "EUR", amount, 0, False, Raw(b'[["p1",1,1000,""]]')))


def stamps(m: ReadModel, kind: type[Order] | type[Cart] = Order, first: str = "", last: str = OPEN_END) -> dict[str, int]:
    assert isinstance(m, DayStamped)
    return m.day_stamps("a", kind, first, last)


def by_key(records: list[Record[Order]]) -> dict[str, Record[Order]]:
    return {r.key: r for r in records}


def test_a_day_range_reads_what_a_full_read_filtered_by_day_gives(model: ReadModel) -> None:
    rng = random.Random(5)
    model.write([order(i, 1, rng.choice(DAYS)) for i in range(400)] + [order(0, 1, "2026-11-03", org="b")])
    model.write([order(i, 2, rng.choice(DAYS)) for i in range(0, 400, 3)])  # a third move (or stay)
    every = model.records("a", Order)
    assert len(every) == 400 and len({r.key for r in every}) == 400
    for first, last in [("", OPEN_END), ("2026-11-01", "2026-11-01"), ("2026-11-05", "2026-11-11"), ("2026-11-30", "2026-12-31"),
                        ("2026-10-01", "2026-10-31"), ("2026-11-10", "2026-11-09"), ("2026-11-07", "2026-11-07T")]:
        want = sorted((r for r in every if first <= r.day <= last), key=lambda r: r.key)
        assert sorted(model.records("a", Order, first, last), key=lambda r: r.key) == want, (first, last)
    assert model.records("a", Cart) == [] and [r.org for r in model.records("b", Order)] == ["b"]
    # every day with records has a stamp; the stamps of a range are those of its days
    assert {r.day for r in every} <= set(stamps(model))
    assert stamps(model, first="2026-11-05", last="2026-11-11") == {d: n for d, n in stamps(model).items() if "2026-11-05" <= d <= "2026-11-11"}


def test_a_record_that_moves_day_leaves_its_old_day_and_both_stamps_move(model: ReadModel) -> None:
    model.write([order(1, 1, "2026-11-05"), order(2, 1, "2026-11-05"), order(3, 1, "2026-11-09")])
    before = stamps(model)
    assert before.keys() == {"2026-11-05", "2026-11-09"}
    model.write([order(1, 2, "2026-11-07", amount=5)])  # paid later than first reported
    after = stamps(model)
    assert [r.key for r in model.records("a", Order, "2026-11-05", "2026-11-05")] == ["s:o2"]
    assert by_key(model.records("a", Order, "2026-11-07", "2026-11-07")) == {"s:o1": order(1, 2, "2026-11-07", amount=5)}
    assert len(model.records("a", Order)) == 3
    assert after["2026-11-05"] != before["2026-11-05"] and "2026-11-07" in after
    assert after["2026-11-09"] == before["2026-11-09"]
    # and back again: the day it left holds it again, the day between holds nothing
    model.write([order(1, 3, "2026-11-05")])
    assert model.records("a", Order, "2026-11-06", "2026-11-08") == []
    assert sorted(r.key for r in model.records("a", Order, "2026-11-05", "2026-11-05")) == ["s:o1", "s:o2"]


def test_stamps_change_exactly_when_a_days_records_change(model: ReadModel) -> None:
    rng = random.Random(9)
    latest: dict[int, Record[Order]] = {}
    for version in range(1, 30):
        batch = [order(i, version if rng.random() < 0.7 else rng.randrange(1, version + 1), rng.choice(DAYS[:8]),
                       amount=rng.randrange(1, 9)) for i in rng.sample(range(40), 6)]
        before = stamps(model)
        contents = {d: by_key(model.records("a", Order, d, d)) for d in DAYS[:8]}
        model.write(batch)
        touched = set()  # the days of the applied changes, and the days their records left
        for r in batch:
            i = int(r.key[3:])
            if i not in latest or r.version > latest[i].version:
                touched |= {r.day} | ({latest[i].day} if i in latest else set())
                latest[i] = r
        after = stamps(model)
        for d in DAYS[:8]:
            now = by_key(model.records("a", Order, d, d))
            assert now == {r.key: r for r in latest.values() if r.day == d}
            if after.get(d) == before.get(d):  # equal stamps, equal records
                assert now == contents[d], d
            assert (after.get(d) != before.get(d)) == (d in touched), (version, d)


def test_replayed_and_older_versions_change_no_stamp_and_no_record(model: ReadModel) -> None:
    """(That they publish nothing: tests/test_read_model.py, on both models.)"""
    first = [order(i, 5, DAYS[i % 4]) for i in range(20)]
    model.write(first)
    before, records = stamps(model), by_key(model.records("a", Order))
    model.write(first)  # a replay after a restart
    model.write([order(i, 4, DAYS[10]) for i in range(20)])  # older versions, on another day
    assert stamps(model) == before and by_key(model.records("a", Order)) == records


def test_unstamped_kinds_are_read_by_day_range_and_refuse_stamps(model: ReadModel) -> None:
    """A segment member's "day" is its segment (core/segment_records.py): a segment's members are a day."""
    assert set(sqlite_readmodel.UNSTAMPED) == set(day_stamps.UNSTAMPED) == {"segment_member", "segment_change"}
    left = Record("a", 2, SegmentMember.KIND, "vip|c1", "vip", SegmentMember("vip", "c1", False, 1))
    other = Record("a", 1, SegmentMember.KIND, "new|c1", "new", SegmentMember("new", "c1", True, 1))
    model.write([Record("a", 1, SegmentMember.KIND, "vip|c1", "vip", SegmentMember("vip", "c1", True, 1)), other])
    model.write([left])
    assert model.records("a", SegmentMember, "vip", "vip") == [left]
    assert model.records("a", SegmentMember, "new", "new") == [other]
    assert sorted(r.key for r in model.records("a", SegmentMember)) == ["new|c1", "vip|c1"]
    assert isinstance(model, DayStamped)
    with pytest.raises(ValueError, match="segment_member records are not stamped"):
        model.day_stamps("a", SegmentMember)


# --- Redis: the previous layout (one hash per kind), moved into days when a model opens --------------

def _old_layout(r: redis.Redis, records: list[Record[Order]]) -> None:
    """What main's RedisReadModel wrote before records were kept by day: the kind's hash and versions."""
    with r.pipeline(transaction=False) as pipe:
        for rec in records:
            field = f"r|{rec.kind}|{rec.key}"
            pipe.hset(f"sp:rm:{{{rec.org}}}:rec:{rec.kind}", field, rec.to_json())
            pipe.hset(f"sp:rm:{{{rec.org}}}:versions", field, rec.version)
        pipe.execute()


def test_a_model_written_by_the_previous_layout_is_moved_into_days_on_open(redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    rng = random.Random(2)
    old = [order(i, 3, rng.choice(DAYS)) for i in range(300)] + [order(1, 3, "2026-11-02", org="b")]
    member = Record("a", 3, SegmentMember.KIND, "vip|c1", "vip", SegmentMember("vip", "c1", True, 1))
    _old_layout(r, old)
    change = Record("a", 3, SegmentChange.KIND, "vip|c1|1|entered", "vip|1970-01-01T00:00:00.001Z",
                    SegmentChange("vip", "c1", "entered", 1, "e1", False))
    for rec in (member, change):
        r.hset(f"sp:rm:{{a}}:rec:{rec.kind}", f"r|{rec.kind}|{rec.key}", rec.to_json())
    model = RedisReadModel(redis_server.url)
    assert model.moved == 302  # the member too: kept by segment
    assert by_key(model.records("a", Order)) == by_key(old[:300])
    assert by_key(model.records("a", Order, "2026-11-04", "2026-11-04")) == by_key([x for x in old if x.day == "2026-11-04" and x.org == "a"])
    assert model.records("b", Order) == [old[300]]
    assert set(stamps(model)) == {x.day for x in old[:300]}
    assert not r.exists("sp:rm:{a}:rec:order") and not r.exists("sp:rm:{b}:rec:order")
    assert model.records("a", SegmentMember, "vip", "vip") == [member] and r.hlen("sp:rm:{a}:recs:segment_member:vip") == 1
    assert model.records("a", SegmentChange) == [change] and r.hlen("sp:rm:{a}:rec:segment_change") == 1  # stays
    # moved records keep their versions: a replay changes nothing, a newer version moves as usual
    before = stamps(model)
    model.write(old[:50])
    assert stamps(model) == before
    model.write([order(0, 4, "2026-11-30", amount=1)])
    assert model.records("a", Order, "2026-11-30", "2026-11-30")[-1] == order(0, 4, "2026-11-30", amount=1)
    assert len(model.records("a", Order)) == 300
    model.close()
    # opening again moves nothing (and, the layout marked, scans nothing)
    assert r.get(LAYOUT_KEY) == b"days"
    again = RedisReadModel(redis_server.url)
    assert again.moved == 0 and len(again.records("a", Order)) == 300
    again.close()


def test_two_models_opening_at_once_move_each_record_once_and_a_write_between_wins(redis_server: RedisServer) -> None:
    """Two models opened at once on their own connections (as two processes would: Redis sees two
    clients interleaving their batches) move every record exactly once between them."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    writer = RedisReadModel(redis_server.url)  # opened on an empty Redis: nothing to move
    # then the previous layout's writer (an upgrade with the old dataflow still running) writes its records
    rng = random.Random(4)
    old = [order(i, 3, rng.choice(DAYS)) for i in range(6_000)]
    _old_layout(r, old)
    r.delete(LAYOUT_KEY)  # as if it had never been set: the old dataflow started over on an empty Redis
    # a newer version written by this layout before the move reached its record: the old copy goes
    newer = order(7, 9, "2026-12-01", amount=7)
    writer.write([newer])
    assert not r.hexists("sp:rm:{a}:rec:order", "r|order|s:o7")
    models: list[RedisReadModel] = []
    opened = [threading.Thread(target=lambda: models.append(RedisReadModel(redis_server.url))) for _ in range(2)]
    for t in opened:
        t.start()
    for t in opened:
        t.join(60)
    assert len(models) == 2 and sum(m.moved for m in models) == 5_999
    for m in models:
        got = by_key(m.records("a", Order))
        assert got == {**by_key(old), newer.key: newer}
        assert sum(len(m.records("a", Order, d, d)) for d in stamps(m)) == 6_000  # each record in one day
        m.close()
    writer.close()
