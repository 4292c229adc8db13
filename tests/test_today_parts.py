"""The order lists right after a write (ws_gateway/list_parts.py OrdersUpdate, OrdersMerge; ws_gateway/
day_cache.py): a day's orders part updated from the records changed since equals the part computed
afresh from all the day's records, and a period's kept sums equal the merge of its parts and the lists
computed over all the period's orders at once, after every step of random histories: today's orders,
late orders on past days, amounts up and down, orders unpaid, moved to another day, refunded, given
other products or names, another store or source, rewritten unchanged; a part dropped by the cache
(computed afresh: no step to apply), the period rolled to the next day. Few products, names, amounts
and paid times, so ties are everywhere; a top of 3 orders a day, so orders leave and join it.
Then the same through the real read API on SQLite and Redis, against the model with its stamps hidden."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
import pytest
from msgspec import Raw

from core.changes import Record
from core.figures import OPEN_END
from core.rates import RecordingRates
from core.records import Order
from state.day_stamps import DayVersioned
from state.readmodel import ReadModel
from state.sqlite_readmodel import SqliteReadModel
from tests.test_day_cache import NOW_MS, Unstamped, _answers, _order, _shop, _side
from ws_gateway import day_updates, list_parts, lists
from ws_gateway.day_cache import DETAILS, DayCache, DayUpdate

T = TypeVar("T")
D = TypeVar("D")

TZ = ZoneInfo("UTC")
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = [(START + timedelta(days=i)).date().isoformat() for i in range(12)]
DAY_MS = 86_400_000
START_MS = int(START.timestamp() * 1000)
CURRENCIES = ("EUR",) * 6 + ("GBP",)  # GBP without a rate: its orders' amounts left out, the day's gap


class History:
    """Order records by key; each a version above the last, as the read model would hold them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.orders: dict[str, Record[Order]] = {}
        self.version = 0
        for _ in range(80):
            self.new(rng.randrange(6))

    def _paid(self, day: int) -> int:
        return START_MS + day * DAY_MS + self.rng.randrange(20) * 60_000  # 20 paid times a day: ties

    def _lines(self) -> list[tuple[str, int, int, str]]:
        rng = self.rng
        return [(f"p{rng.randrange(5)}", rng.choice((1, 2)), rng.choice((100, 200)), rng.choice(("", "A", "B")))
                for _ in range(rng.choice((1, 2, 3)))]

    def write(self, key: str, day: str, value: Order) -> str:
        self.version += 1
        self.orders[key] = Record("acme", self.version, Order.KIND, key, day, value)
        return day

    def new(self, day: int) -> set[str]:
        rng, lines, paid = self.rng, self._lines(), self._paid(day)
        key = f"o{len(self.orders)}"
        return {self.write(key, DAYS[day], Order(
            store=rng.choice(("web", "shop")), order=key, customer=rng.choice((None, "c1", "c2")),
            source=rng.choice(("web", "email_campaign")), placed=paid - 1000, paid=paid, currency=rng.choice(CURRENCIES),
            amount=sum(q * u for _, q, u, _ in lines), refunded=0, cancelled=False, items=Raw(orjson.dumps(lines))))}

    def change(self, key: str, day: int | None = None, **fields: Any) -> set[str]:
        """Rewrites an order with these fields (on another day: `day`); the days it left and landed on."""
        r = self.orders[key]
        value = r.value.__class__(**{**{f: getattr(r.value, f) for f in r.value.__struct_fields__}, **fields})
        to = r.day if day is None else DAYS[day]
        return {r.day, self.write(key, to, value)}

    def step(self, today: int) -> set[str]:
        """One random write; the days whose records it changed."""
        rng = self.rng
        what = rng.randrange(11)
        if what < 3:
            return self.new(today)
        if what == 3:
            return self.new(rng.randrange(today))  # late, on a past day
        key = rng.choice(sorted(self.orders))
        if what == 4:
            return self.change(key, amount=rng.choice((50, 100, 300, 900)))
        if what == 5:
            return self.change(key, paid=None)
        if what == 6:
            moved = rng.randrange(today + 1)
            return self.change(key, day=moved, paid=self._paid(moved))
        if what == 7:
            return self.change(key, refunded=self.orders[key].value.amount)
        if what == 8:
            lines = self._lines()
            return self.change(key, items=Raw(orjson.dumps(lines)), amount=sum(q * u for _, q, u, _ in lines))
        if what == 9:
            return self.change(key, store=rng.choice(("web", "shop")), source=rng.choice(("web", "automation")),
                               currency=rng.choice(CURRENCIES))
        return self.change(key)  # rewritten unchanged: a newer version alone

    def day(self, day: str) -> list[Record[Order]]:
        out = [r for r in self.orders.values() if r.day == day]
        self.rng.shuffle(out)  # whatever order a model hands them over in
        return out


def _same(a: list_parts.OrdersPart, b: list_parts.OrdersPart) -> None:
    assert a.count == b.count
    assert [(o.key, o.paid, o.amount) for o in a.latest] == [(o.key, o.paid, o.amount) for o in b.latest]
    assert [(o.key, o.paid, o.amount) for o in a.best] == [(o.key, o.paid, o.amount) for o in b.best]
    assert a.by_source == b.by_source and a.products == b.products and a.gaps == b.gaps
    assert (a.baskets.orders, a.baskets.freq, a.baskets.together) == (b.baskets.orders, b.baskets.freq, b.baskets.together)


def _update(up: DayUpdate[Order, T, D], kept: tuple[T, D], records: list[Record[Order]]) -> tuple[T, D] | None:
    """What DayCache._update does with a model that says nothing but the day's records."""
    versions = {r.key: r.version for r in records}
    had = up.versions(kept[1])
    changed = {k for k, v in versions.items() if had.get(k) != v}
    return up.update(kept[0], kept[1], [r for r in records if r.key in changed], [k for k in had if k not in versions])


def _history(seed: int, store: str | None) -> tuple[int, int, int]:
    """The steps of one history; how many days were updated, how many steps a merge applied, and in
    how many updates a day's gaps changed."""
    rng = random.Random(seed)
    h = History(rng)
    up = list_parts.OrdersUpdate("EUR", None, store)
    kept = {d: up.build(h.day(d)) for d in DAYS}
    cup, tup = day_updates.CustomersUpdate("EUR", None, store), day_updates.PaidTimesUpdate()
    customers = {d: cup.build(h.day(d)) for d in DAYS}
    times = {d: tup.build(h.day(d)) for d in DAYS}
    merge = list_parts.OrdersMerge()
    today, span = 6, rng.choice((0, 2, 6))
    updated = stepped = gapped = 0
    real_step = merge._step

    def counting(step: list_parts.Step, lost: dict[str, tuple[int, str]]) -> None:
        nonlocal stepped
        stepped += 1
        real_step(step, lost)

    merge._step = counting  # type: ignore[method-assign]
    for n in range(90):
        if n % 30 == 29:
            today += 1  # midnight: the same merge, one day out and one in
        for d in h.step(today):
            records = h.day(d)
            fresh = up.build(records)
            _same(up.build_part(records), fresh[0])  # a day that keeps no detail: the same part
            done = None if rng.random() < 0.1 else _update(up, kept[d], records)  # 1 in 10: dropped, computed afresh
            if done is not None:
                updated += 1
                gapped += done[0].gaps != kept[d][0].gaps
                _same(done[0], fresh[0])
                assert done[1] == fresh[1], (seed, n, d)
            kept[d] = done or fresh
            # the best customers' and the quota's parts of the day, against computing them afresh
            whole_customers = list_parts.customers_part(records, currency="EUR", rates=None, store=store)
            c = _update(cup, customers[d], records)
            assert c is not None and c[0] == whole_customers == cup.build(records)[0], (seed, n, d)
            t = _update(tup, times[d], records)
            assert t is not None and t[0] == list_parts.paid_times(records)
            customers[d], times[d] = c, t
        first, last = DAYS[today - span], DAYS[today]
        parts = {d: p for d, (p, _) in kept.items() if first <= d <= last}
        merge.sync(parts)
        whole = list(parts.values())
        assert merge.count == sum(p.count for p in whole)
        assert merge.gaps == list_parts.gaps(whole)
        assert merge.by_source == list_parts.merge_by_source(whole)
        assert merge.products == list_parts.merge_products(whole), (seed, n)
        b = list_parts.merge_baskets(whole)
        assert (merge.baskets.orders, merge.baskets.freq, merge.baskets.together) == (b.orders, b.freq, b.together)
        # and what the API shows, against the lists over all the period's orders at once
        rates = RecordingRates(None)
        paid = lists.paid_orders([r for r in h.orders.values() if first <= r.day <= last
                                  and store in (None, r.value.store)], "EUR", rates)
        assert merge.gaps == rates.gaps
        for sort in ("revenue", "units", "orders"):
            assert (lists.rank_products(merge.products, sort=sort, limit=4, currency="EUR")
                    == lists.products_list(paid, sort=sort, limit=4, currency="EUR")), (seed, n, sort)
        for sort in ("orders", "lift"):
            assert lists.rank_pairs(merge.baskets, sort=sort, limit=5) == lists.pairs_list(paid, sort=sort, limit=5)
        for sort in ("latest", "best"):
            for limit in (1, 3):
                merged = list_parts.merge_orders(whole, sort=sort, limit=limit)
                assert (lists.orders_list(merged, sort=sort, limit=limit, currency="EUR", tz=TZ)
                        == lists.orders_list(paid, sort=sort, limit=limit, currency="EUR", tz=TZ))
    return updated, stepped, gapped


@pytest.mark.unit
@pytest.mark.parametrize("store", [None, "shop"])
def test_updated_parts_and_kept_sums_equal_a_recompute_after_every_write(store: str | None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_parts, "MOST", 3)  # a day's top orders: 3, so orders leave it and it is redone
    monkeypatch.setattr(lists, "PAIR_PRODUCTS", 3)  # pairs among the 3 most-ordered of 5 products: ties decide
    updated = stepped = gapped = 0
    for seed in range(10):
        u, s, g = _history(seed, store)
        updated, stepped, gapped = updated + u, stepped + s, gapped + g
    assert updated > 500 and stepped > 300, (updated, stepped)  # most writes were updates, not recomputes
    assert gapped, "a day's gap (GBP orders, no rate) came or went in an update"


@pytest.mark.unit
def test_a_products_name_is_its_latest_orders_whatever_the_order_met() -> None:
    def paid(key: str, at: int, lines: list[tuple[str, int, int, str]]) -> lists.Paid:
        order = Order(store="web", order=key, customer=None, source="web", placed=None, paid=at, currency="EUR",
                      amount=100, refunded=0, cancelled=False, items=Raw(orjson.dumps(lines)))
        return lists.paid_orders([Record("o", 1, Order.KIND, key, "2026-11-01", order)], "EUR", None)[0]

    orders = [paid("a", 5, [("p", 1, 100, "Old")]), paid("b", 9, [("p", 1, 100, ""), ("p", 1, 100, "New")]),
              paid("c", 9, [("p", 1, 100, "")]), paid("d", 7, [("q", 1, 100, "Q")])]
    for _ in range(6):
        random.Random(_).shuffle(orders)
        totals = lists.product_totals(orders)
        assert totals["p"][:4] == ["New", 400, 4, 3] and totals["q"][0] == "Q"
    acc = lists.product_totals(orders)
    b = next(o for o in orders if o.key == "b")
    assert lists.add_order(acc, b, -1) == ["p"] and acc["p"][0] == "" and acc["p"][4] is None  # for the caller to find
    lists.add_order(acc, next(o for o in orders if o.key == "d"), -1)
    assert "q" not in acc  # no order left


def test_the_read_api_after_writes_equals_the_whole_period_on_both_models(stamped: ReadModel, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders, products and pairs (and every other list) through updated day parts and kept sums,
    after each of a run of writes to today, to past days, moving and unpaying orders; both models say
    which records changed (DayVersioned)."""
    updates: list[bool] = []
    update = list_parts.OrdersUpdate.update

    def counting(self: list_parts.OrdersUpdate, *args: Any) -> Any:
        out = update(self, *args)
        updates.append(out is not None)
        return out

    monkeypatch.setattr(list_parts.OrdersUpdate, "update", counting)
    rng = random.Random(41)
    model = stamped
    model.write(_shop(rng))
    cached, whole = _side(model, tmp_path), _side(Unstamped(model), tmp_path)
    cached.day_cache.details = 64  # every day of both stores keeps its detail: what is updated does not depend on DETAILS
    assert _answers(cached) == _answers(whole)
    version = 10
    for i in range(5):
        version += 1
        today = _order(rng, 5000 + i, version, paid=NOW_MS - rng.randrange(3_600_000))
        late = _order(rng, 6000 + i, version, paid=NOW_MS - rng.randrange(1, 8) * DAY_MS)
        again = _order(rng, rng.randrange(300), version)  # an existing order rewritten: amount, day, products
        r = rng.choice(model.records("acme", Order))
        unpaid = Record("acme", version, Order.KIND, r.key, r.day, r.value.__class__(
            **{**{f: getattr(r.value, f) for f in r.value.__struct_fields__}, "paid": None}))
        model.write([today, late, again] + ([unpaid] if unpaid.key != again.key else []))
        assert _answers(cached) == _answers(whole), i
    assert sum(updates) >= 10, "days were updated from their changed records"
    assert isinstance(model, DayVersioned)


@pytest.mark.unit
def test_counts_down_to_zero_are_dropped() -> None:
    c: Counter[str] = Counter({"a": 1, "b": 2})
    list_parts.add_counts(c, ["a", "b"], -1)
    assert c == Counter({"b": 1}) and "a" not in c


def test_the_newest_days_keep_what_updating_them_needs(tmp_path: Path) -> None:
    """Per variant the DETAILS newest days keep their detail, whichever period was asked last: a write
    to today is an update from its changed records; one to an older day recomputes that day from all."""
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    rng = random.Random(43)
    model.write([_order(rng, i, 1) for i in range(300)])  # 12 days before NOW
    cache = DayCache()
    up = list_parts.OrdersUpdate("EUR", None, None)
    built: list[int] = []  # parts computed with a detail
    plain: list[int] = []  # without: a day older than those that keep theirs
    updated: list[int] = []

    class Counting(list_parts.OrdersUpdate):
        def build(self, records: list[Record[Order]]) -> tuple[list_parts.OrdersPart, list_parts.OrdersDay]:
            built.append(len(records))
            return up.build(records)

        def build_part(self, records: list[Record[Order]]) -> list_parts.OrdersPart:
            plain.append(len(records))
            return up.build_part(records)

        def update(self, *args: Any) -> Any:
            updated.append(1)
            return up.update(*args)

    counting = Counting("EUR", None, None)
    days = sorted(model.day_stamps("acme", Order))

    def parts(first: str, last: str) -> list[tuple[str, list_parts.OrdersPart]]:
        return cache.day_parts(model, "acme", Order, first, last, "v", counting.build_part, update=counting)

    parts(days[4], days[-1])
    parts(days[0], days[3])  # an older period computed last: the newest days keep their details all the same
    assert sorted(cache._details[("acme", Order.KIND, "v")]) == days[-DETAILS:]
    built.clear()
    plain.clear()
    model.write([_order(rng, 900, 2, paid=NOW_MS - 60_000), _order(rng, 901, 2, paid=int(
        datetime.fromisoformat(days[0] + "T12:00:00+00:00").timestamp() * 1000))])
    got = parts(days[0], days[-1])
    assert updated == [1] and not built and len(plain) == 1  # today updated; the oldest day computed, no detail
    whole = {d: up.build(model.records("acme", Order, d, d))[0] for d in days}
    for d, p in got:
        _same(p, whole[d])
    model.close()


def test_an_older_part_put_back_by_a_slower_request_is_not_updated_with_a_newer_detail(tmp_path: Path) -> None:
    """A request that read the stamps before a write puts the day's older part back after another
    request updated it: the newer detail does not go with that part, so the day is computed afresh."""
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    rng = random.Random(47)
    model.write([_order(rng, i, 1, paid=NOW_MS - rng.randrange(3_600_000)) for i in range(40)])
    cache, up = DayCache(), list_parts.OrdersUpdate("EUR", None, None)
    (day, before), = cache.day_parts(model, "acme", Order, "", OPEN_END, "v", up.build_part, update=up)
    key = ("acme", Order.KIND, "v", day)
    stale = cache._parts[key]
    model.write([_order(rng, 100, 2, paid=NOW_MS - 60_000)])
    cache.day_parts(model, "acme", Order, "", OPEN_END, "v", up.build_part, update=up)  # updated: a newer detail
    cache._keep(key, stale)  # the slower request's older part, back under its older stamp
    (_, after), = cache.day_parts(model, "acme", Order, "", OPEN_END, "v", up.build_part, update=up)
    _same(after, up.build(model.records("acme", Order, day, day))[0])
    assert after.count == before.count + 1
    model.close()


def test_a_model_says_each_days_versions_and_gives_records_by_key(stamped: ReadModel) -> None:
    """What DayCache reads to update a day (DayVersioned), on SQLite and Redis: every record of the day
    at its version, with no value read; records by key wherever they are, a moved one on its new day."""
    model = stamped
    assert isinstance(model, DayVersioned)
    rng = random.Random(53)
    orders = [_order(rng, i, 1) for i in range(120)]
    model.write(orders)
    days = sorted({r.day for r in orders})
    for day in days:
        assert model.day_versions("acme", Order, day) == {r.key: 1 for r in orders if r.day == day}
    moved = _order(rng, 3, 2, paid=NOW_MS - 30 * DAY_MS)  # to a day of its own
    model.write([moved])
    assert model.day_versions("acme", Order, moved.day) == {moved.key: 2}
    assert moved.key not in model.day_versions("acme", Order, orders[3].day)
    wanted = [moved.key, orders[5].key, "web:nobody"]
    assert sorted((r.key, r.day, r.version, r.value) for r in model.records_by_key("acme", Order, wanted)) == sorted(
        [(moved.key, moved.day, 2, moved.value), (orders[5].key, orders[5].day, 1, orders[5].value)])
    assert model.day_versions("acme", Order, "2000-01-01") == {} and model.records_by_key("acme", Order, []) == []
    big = [_order(rng, 10_000 + i, 3, paid=NOW_MS - 40 * DAY_MS) for i in range(2500)]  # read in batches (SQLite 500, Redis 1,000)
    model.write(big)
    assert model.day_versions("acme", Order, big[0].day) == {r.key: 3 for r in big}
    assert len(model.records_by_key("acme", Order, [r.key for r in big])) == 2500
