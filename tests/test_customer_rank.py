"""Best customers kept in step with the day parts (ws_gateway/customer_rank.py) equal the full
computation (lists.period_customers, customers_list, customer_summary over every order of the period)
after every step of random histories: orders today and late on past days, amounts up and down, an
order unpaid, moved to another day or refunded, profiles changed, moved or added, a day part
recomputed unchanged (dropped by the cache), the period rolled to the next day. Few customers and
few amounts, so ties are everywhere; a small ranking bound, so customers leave the kept top and the
ranking is redone. Then the same through the real read API over a real SQLite read model, against
the model with its stamps hidden (the whole period computed per request)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from msgspec import Raw

from core.changes import Record
from core.rates import RecordingRates
from core.records import Customer, CustomerMoney, Order
from state.sqlite_readmodel import SqliteReadModel
from tests.test_day_cache import NOW, NOW_MS, Unstamped, _answers, _order, _shop, _side
from ws_gateway import customer_rank, list_parts, lists

TZ = ZoneInfo("UTC")
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = [(START + timedelta(days=i)).date().isoformat() for i in range(14)]
DAY_MS = 86_400_000
START_MS = int(START.timestamp() * 1000)
SORTS = ("revenue", "orders", "items", "registered")


def _ms(day: int, rng: random.Random) -> int:
    return START_MS + day * DAY_MS + rng.randrange(DAY_MS)


def _day(ms: int) -> str:
    return DAYS[(ms - START_MS) // DAY_MS]


class History:
    """Order and profile records, and their parts per day, recomputed only for the days a step touched."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.orders: dict[str, Record[Order]] = {}
        self.profiles: dict[str, Record[Customer]] = {}
        self.order_parts: dict[str, list_parts.CustomersPart] = {}
        self.life_parts: dict[str, dict[str, lists.Lifetime]] = {}
        self.n = 0
        for _ in range(60):
            self.new_order(rng.randrange(len(DAYS)))
        for c in range(10):  # c10, c11 buy without a profile
            self.profile(f"c{c}")
        self.recompute(set(DAYS))

    def new_order(self, day: int) -> str:
        self.n += 1
        rng = self.rng
        paid = _ms(day, rng)
        lines = [(f"p{rng.randrange(3)}", rng.choice((1, 2)), rng.choice((100, 200)), "") for _ in range(rng.choice((1, 2)))]
        customer = None if rng.random() < 0.1 else f"c{rng.randrange(12)}"
        self.orders[f"o{self.n}"] = Record("acme", self.n, Order.KIND, f"o{self.n}", _day(paid), Order(
            store="web", order=f"o{self.n}", customer=customer, source="web", placed=paid - 1000, paid=paid,
            currency="EUR", amount=rng.choice((100, 200, 300)), refunded=0, cancelled=False, items=Raw(orjson.dumps(lines))))
        return _day(paid)

    def profile(self, customer: str) -> set[str]:
        rng = self.rng
        reg = _ms(rng.randrange(len(DAYS)), rng)
        first = None if rng.random() < 0.3 else _ms(rng.randrange(len(DAYS)), rng) - rng.choice((0, 30 * DAY_MS))
        money = [CustomerMoney("web", "EUR", 2, 3, rng.choice((100, 500)), rng.choice((0, 50)), first, first)] if first else []
        old = self.profiles.get(customer)
        self.n += 1
        self.profiles[customer] = Record("acme", self.n, Customer.KIND, customer, _day(reg), Customer(
            customer=customer, store="web", registered=reg, first_seen=reg, registered_at=reg, last_active=None,
            email=None, name=None, orders=2 if first else 0, items=3, first_paid=first, last_paid=first, money=money))
        return {_day(reg)} | ({old.day} if old else set())

    def change(self, key: str, **fields: Any) -> set[str]:
        """An order changed (a newer version): the days it left and entered."""
        old = self.orders[key]
        value = old.value.__class__(**{**{f: getattr(old.value, f) for f in old.value.__struct_fields__}, **fields})
        day = _day(value.paid) if value.paid is not None else old.day
        self.n += 1
        self.orders[key] = Record("acme", self.n, Order.KIND, key, day, value)
        return {old.day, day}

    def step(self, today: int) -> set[str]:
        """One random write; the days whose records it changed."""
        rng, keys = self.rng, sorted(self.orders)
        what = rng.randrange(9)
        if what == 0:
            return {self.new_order(today)}
        if what == 1:
            return {self.new_order(rng.randrange(today))}  # late, on a past day
        key = rng.choice(keys)
        if what == 2:
            return self.change(key, amount=rng.choice((0, 100, 200, 300, 900)))
        if what == 3:
            return self.change(key, paid=None)
        if what == 4:
            return self.change(key, paid=_ms(rng.randrange(today + 1), rng))
        if what == 5:
            return self.change(key, refunded=self.orders[key].value.amount)
        if what == 6:
            return self.profile(f"c{rng.randrange(12)}")
        if what == 7:
            return {DAYS[rng.randrange(len(DAYS))]}  # recomputed though nothing changed (dropped by the cache)
        return self.change(key, customer=rng.choice((None, "c0", "c11")))

    def recompute(self, days: set[str]) -> None:
        for d in days:
            self.order_parts[d] = list_parts.customers_part([r for r in self.orders.values() if r.day == d],
                                                            currency="EUR", rates=None, store=None)
            self.life_parts[d] = lists.lifetimes([r for r in self.profiles.values() if r.day == d], currency="EUR",
                                                 rates=None, tz=TZ, store=None)


def _expected(h: History, first: str, last: str, sort: str, limit: int) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    mine = [r for r in h.orders.values() if first <= r.day <= last]
    paid = lists.paid_orders(mine, "EUR", None)
    figures = lists.period_customers(paid)
    lives = lists.lifetimes(h.profiles.values(), currency="EUR", rates=None, tz=TZ, store=None)
    first_ever = {k: life.first_paid for k in figures if (life := lives.get(k)) is not None and life.first_paid is not None}
    guests = sum(1 for o in paid if o.order.customer is None)
    return (lists.customers_list(figures, lives, sort=sort, limit=limit, currency="EUR", tz=TZ),
            lists.customer_summary(figures, first_ever, guests, first, last, TZ), sum(c.orders for c in figures.values()))


@pytest.mark.unit
def test_kept_ranking_and_summary_equal_the_full_computation_after_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer_rank, "KEEP", 3)  # a bound the ranking crosses: customers leave the kept top
    redone = []
    first_of = customer_rank.TopRank.first

    def counting(rank: customer_rank.TopRank, limit: int) -> list[str] | None:
        out = first_of(rank, limit)
        redone.append(out is None)
        return out

    monkeypatch.setattr(customer_rank.TopRank, "first", counting)
    for seed in range(12):
        _history(seed)
    assert sum(redone) >= 12, "customers left the kept top and the ranking was redone"


def _history(seed: int) -> None:
    rng = random.Random(seed)
    h = History(rng)
    lives = customer_rank.LivesMerge()
    today, span = 8, rng.choice((0, 3, 7))
    periods: dict[tuple[str, str], customer_rank.RankedPeriod] = {}
    rolling = customer_rank.DayMerge()  # one merge across the days the period rolls over
    for step in range(80):
        if step % 25 == 24 and today < len(DAYS) - 1:
            today += 1  # the next day: the period rolled (as the read side does at midnight), or one anew
            before = periods.pop((DAYS[today - 1 - span], DAYS[today - 1]))
            if step < 50:
                periods[(DAYS[today - span], DAYS[today])] = before.roll(DAYS[today - span], DAYS[today])
        first, last = DAYS[today - span], DAYS[today]
        period = periods.setdefault((first, last), customer_rank.RankedPeriod(first, last, TZ))
        lives.sync(h.life_parts)
        days = {d: p.customers for d, p in h.order_parts.items() if first <= d <= last}
        period.sync(days, lives)
        rolling.sync(days)
        assert rolling.figures == period.merge.figures
        guests = sum(p.guests for d, p in h.order_parts.items() if first <= d <= last)
        for sort in SORTS:  # all of the ranking (1000) only at the end: asking for it widens the kept top
            for limit in (1, 2) if step < 79 else (1, 1000):
                rows, summary, orders = _expected(h, first, last, sort, limit)
                got = lists.customer_rows(period.ranked(sort, limit), period.merge.figures, lives.lives, currency="EUR", tz=TZ)
                assert got == rows, (seed, step, sort, limit)
                assert period.summary(guests) == summary, (seed, step)
                assert period.merge.orders == orders
        h.recompute(h.step(today))


@pytest.mark.unit
def test_a_customer_leaving_the_kept_top_is_not_replaced_by_a_wrong_one() -> None:
    figures = {"a": 5, "b": 4, "c": 3, "d": 2}
    rank = customer_rank.TopRank(lambda c: (-figures[c], c), keep=2)
    rank.build(figures)
    assert rank.first(2) == ["a", "b"] and rank.bound == (-4, "b")
    figures["a"] = 1  # falls below the bound: out of the kept top, and c (never kept) is unknown
    rank.update("a", True)
    assert rank.first(1) == ["b"] and rank.first(2) is None
    rank.build(figures)
    assert rank.first(2) == ["b", "c"]
    figures["d"] = 9  # rises above the bound: in
    rank.update("d", True)
    assert rank.first(3) == ["d", "b", "c"]
    rank.update("b", False)  # gone from the period
    assert rank.first(2) == ["d", "c"]


def test_the_read_api_ranks_as_the_whole_period_through_live_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/customers (all sorts, 7d, 30d, today and all time) through the kept ranking over a real SQLite
    read model equals the same model with its stamps hidden, after each of a run of writes."""
    monkeypatch.setattr(customer_rank, "KEEP", 4)
    rng = random.Random(17)
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(_shop(rng))
    cached, whole = _side(model, tmp_path), _side(Unstamped(model), tmp_path)
    assert _answers(cached) == _answers(whole)
    profiles = model.records("acme", Customer)
    for i in range(6):
        late = _order(rng, 2000 + i, 5, paid=NOW_MS - rng.randrange(1, 10) * DAY_MS)  # a past day
        today = _order(rng, 3000 + i, 5, paid=NOW_MS - rng.randrange(3_600_000))
        again = _order(rng, rng.randrange(300), 10 + i)  # an existing order rewritten: amount, day, customer
        p = rng.choice(profiles)
        first = NOW_MS - rng.randrange(40) * DAY_MS
        money = [CustomerMoney("web", "EUR", 3, 4, 5000 + i, 100, first, first + 1)]
        profile = Record("acme", 10 + i, Customer.KIND, p.key, p.day, p.value.__class__(
            **{**{f: getattr(p.value, f) for f in p.value.__struct_fields__},
               "orders": 3, "first_paid": first, "last_paid": first + 1, "money": money}))
        model.write([late, today, again, profile])
        assert _answers(cached) == _answers(whole), i
    model.close()


@pytest.mark.unit
@pytest.mark.parametrize("store", [None, "shop"])
def test_a_days_customers_part_is_the_period_customers_of_its_paid_orders(store: str | None) -> None:
    """Guests, unpaid orders, another store, GBP without a rate (a gap): the same sums and gaps."""
    rng = random.Random(23)
    records = [_order(rng, i, 1, paid=NOW_MS - rng.randrange(DAY_MS)) for i in range(200)]
    records = [r if i % 7 else Record(r.org, r.version, r.kind, r.key, r.day, r.value.__class__(
        **{**{f: getattr(r.value, f) for f in r.value.__struct_fields__}, "paid": None})) for i, r in enumerate(records)]
    rates = RecordingRates(None)
    paid = lists.paid_orders([r for r in records if store in (None, r.value.store)], "EUR", rates)
    light = list_parts.customers_part(records, currency="EUR", rates=None, store=store)
    guests = sum(1 for o in paid if o.order.customer is None)
    assert light.customers == lists.period_customers(paid) and light.guests == guests > 0
    assert light.gaps == rates.gaps != set()
    assert sum(c.orders for c in light.customers.values()) + light.guests < len(records)  # unpaid (and another store's) left out


@pytest.mark.unit
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Santiago", "America/Havana", "Pacific/Apia", "UTC"])
def test_a_periods_instants_are_those_of_its_local_days_across_dst(zone: str) -> None:
    """Santiago and Havana move their clocks at midnight (a day starting at 01:00, or twice); Apia
    skipped 2011-12-30 altogether."""
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    transitions = [datetime(2022, 9, 10, tzinfo=UTC), datetime(2022, 3, 12, tzinfo=UTC), datetime(2022, 11, 5, tzinfo=UTC),
                   datetime(2011, 12, 29, tzinfo=UTC), datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 10, 24, tzinfo=UTC)]
    days = transitions + [datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(366))
                          for year in (2011, 2022, 2026) for _ in range(100)]
    for day in days:
        first, last = day.date().isoformat(), (day + timedelta(days=rng.randrange(3))).date().isoformat()
        since, until = customer_rank.local_days(first, last, tz)
        for hours in range(-30, 80):
            ms = int((day + timedelta(hours=hours, minutes=rng.choice((0, 1, 59)))).timestamp() * 1000)
            local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).date().isoformat()
            assert (since <= ms < until) == (first <= local <= last), (zone, first, last, ms)
    assert customer_rank.local_days("", "\uffff", tz) == (float("-inf"), float("inf"))
    assert customer_rank.local_days("0001-01-01", "9999-12-31", tz)[1] == float("inf")


def test_after_midnight_the_periods_roll_and_answer_as_the_whole_period(tmp_path: Path) -> None:
    """The next day, "7d" and "30d" are new periods: the kept sums of the day before are rolled
    (the same DayMerge) and answer as the model with its stamps hidden."""
    rng = random.Random(29)
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(_shop(rng))
    clock = [NOW]
    cached, whole = _side(model, tmp_path), _side(Unstamped(model), tmp_path)
    cached.now = whole.now = lambda: clock[0]
    assert _answers(cached) == _answers(whole)
    ranked = cached.day_cache._states[("customers", "acme", "EUR", None, "Europe/Berlin")][0]
    merges = {id(p.merge) for span, p in ranked.periods.items() if span[0]}  # today, 7d, 30d
    last = max(span[1] for span in ranked.periods if span[0])
    clock[0] = NOW + timedelta(days=1)
    model.write([_order(rng, 4000, 5, paid=NOW_MS + DAY_MS - 3_600_000)])
    assert _answers(cached) == _answers(whole)
    rolled = {id(p.merge) for span, p in ranked.periods.items() if span[0] and span[1] > last}
    assert len(rolled) == 3 and rolled == merges, "the new day's periods took the kept sums"
    model.close()


def test_kept_customers_beyond_their_bound_drop_the_least_recently_used(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(_shop(random.Random(31)))
    cached, whole = _side(model, tmp_path), _side(Unstamped(model), tmp_path)
    cached.day_cache.state_entries = 60  # 40 profiles and a 7-day period's customers: one store's fits, not two
    assert _answers(cached) == _answers(whole)
    kept = [key for key in cached.day_cache._states if key[0] == "customers"]
    assert kept == [("customers", "acme", "EUR", None, "Europe/Berlin")], "the last used (all time, all stores) alone"
    model.close()
