"""Per-day parts of the order lists (ws_gateway/list_parts.py) merge into what ws_gateway/lists.py
gives over all the records at once: orders, by source, products, pairs and period customers. Pure."""

from __future__ import annotations

import random
from itertools import groupby
from zoneinfo import ZoneInfo

import orjson
import pytest
from msgspec import Raw

from core.changes import Record
from core.rates import RecordingRates
from core.records import Order
from ws_gateway import list_parts, lists

pytestmark = pytest.mark.unit
UTC_ = ZoneInfo("UTC")


def _orders(seed: int, n: int) -> list[Record[Order]]:
    """n orders over 6 days, in day order as the read model hands them over; names differ per order,
    some missing, so a product's name depends on which order is the latest; GBP ones lack a rate."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = f"2026-11-{10 + rng.randrange(6):02d}"
        lines = [(f"p{rng.randrange(12)}", rng.randrange(1, 4), rng.randrange(100, 900), rng.choice(("", f"n{i}")))
                 for _ in range(rng.randrange(1, 5))]
        out.append(Record("o", 1, Order.KIND, f"s:{i}", day, Order(
            store=rng.choice(("a", "b")), order=str(i), customer=rng.choice((None, *(f"c{k}" for k in range(15)))),
            source=rng.choice(("web", "automation")), placed=None, paid=None if i % 11 == 0 else rng.randrange(10**6),
            currency=rng.choice(("EUR", "EUR", "GBP")), amount=sum(q * u for _, q, u, _ in lines), refunded=0,
            cancelled=False, items=Raw(orjson.dumps(lines)))))
    return sorted(out, key=lambda r: r.day)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("store", [None, "a"])
def test_day_parts_merge_into_the_whole_periods_lists(seed: int, store: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lists, "PAIR_PRODUCTS", 5)  # pairs among the 5 most-ordered of 12 products: ties decide
    records = _orders(seed, 400)
    parts = [list_parts.orders_part(list(day), currency="EUR", rates=None, store=store)
             for _, day in groupby(records, key=lambda r: r.day)]
    rates = RecordingRates(None)
    paid = lists.paid_orders([r for r in records if store in (None, r.value.store)], "EUR", rates)
    assert list_parts.gaps(parts) == rates.gaps != set()
    for sort in ("latest", "best"):
        for limit in (1, 7, 1000):
            merged = list_parts.merge_orders(parts, sort=sort, limit=limit)
            assert (lists.orders_list(merged, sort=sort, limit=limit, currency="EUR", tz=UTC_)
                    == lists.orders_list(paid, sort=sort, limit=limit, currency="EUR", tz=UTC_))
    assert lists.by_source_json(list_parts.merge_by_source(parts), "EUR") == lists.orders_by_source(paid, "EUR")
    for sort in ("revenue", "units", "orders"):
        assert (lists.rank_products(list_parts.merge_products(parts), sort=sort, limit=50, currency="EUR")
                == lists.products_list(paid, sort=sort, limit=50, currency="EUR"))
    for sort in ("orders", "lift"):
        assert lists.rank_pairs(list_parts.merge_baskets(parts), sort=sort, limit=40) == lists.pairs_list(paid, sort=sort, limit=40)
        # named as the products list names them (the name of the latest order naming each)
        products = list_parts.merge_products(parts)
        named = lists.rank_pairs(list_parts.merge_baskets(parts), sort=sort, limit=40, products=products)
        names = {r["product"]: r["name"] for r in lists.products_list(paid, sort="revenue", limit=100, currency="EUR")}
        assert named and [(r["a_name"], r["b_name"]) for r in named] == [(names[r["a"]], names[r["b"]]) for r in named]
        assert any(r["a_name"] for r in named)
    customers = [list_parts.customers_part(list(day), currency="EUR", rates=None, store=store)
                 for _, day in groupby(records, key=lambda r: r.day)]
    assert list_parts.merge_customers(customers) == lists.period_customers(paid)
    assert sum(p.count for p in parts) == len(paid)


@pytest.mark.parametrize("seed", range(5))
def test_best_and_latest_carts_from_day_parts_are_the_summarys_own(seed: int) -> None:
    from core.rates import parse_ecb_csv
    from core.records import Cart
    from ws_gateway import shoppers

    rng = random.Random(seed)
    rates = parse_ecb_csv("Date,USD,\n2026-01-01,1.2500,\n")
    carts = sorted((Record("o", 1, Cart.KIND, f"{store}:k{i}", f"2026-02-{day:02d}", Cart(
        store=store, cart=f"k{i}", person=None, status=rng.choice(("open", "open", "abandoned", "purchased")),
        currency=rng.choice(("EUR", "USD")), value=rng.randrange(100, 20_000), items=[("p", 1, 100)],
        first=day * 86_400_000, last=day * 86_400_000 + rng.randrange(86_400_000), due=None, paid=None))
        for i in range(200) for store, day in [(rng.choice(("web", "shop")), rng.randrange(1, 20))]),
        key=lambda r: r.day)
    by_day = [list(g) for _, g in groupby(carts, key=lambda r: r.day)]
    for store in (None, "shop"):
        for limit in (1, 7, 50):
            whole = shoppers.carts_summary([], [], [], carts, currency="EUR", rates=RecordingRates(rates), limit=limit,
                                           store=store)
            best = list_parts.merge_best_carts([list_parts.best_carts_part(d, store, "EUR", rates) for d in by_day], limit)
            latest = list_parts.merge_carts([list_parts.carts_part(d, store) for d in by_day], limit)
            parts = shoppers.carts_summary([], [], [], latest, currency="EUR", rates=RecordingRates(rates), limit=limit,
                                           store=store, best=best)
            assert whole["best_carts"] and parts["best_carts"] == whole["best_carts"], (store, limit)
            assert parts["latest_carts"] == whole["latest_carts"]


@pytest.mark.parametrize("seed", range(5))
def test_most_abandoned_products_are_named_by_the_latest_cart_naming_them_whole_or_by_day(seed: int) -> None:
    from core.records import AbandonedProduct, Cart
    from ws_gateway import shoppers

    rng = random.Random(seed)
    carts = sorted((Record("o", 1, Cart.KIND, f"web:k{i}", f"2026-02-{day:02d}", Cart(
        store="web", cart=f"k{i}", person=None, status="abandoned", currency="EUR", value=100, items=[],
        first=day * 86_400_000, last=day * 86_400_000 + rng.randrange(3) * 60_000, due=None, paid=None,
        names={p: rng.choice(("Mug", "Mug v2", "Kettle")) for p in rng.sample(("p1", "p2", "p3"), rng.randrange(3))}))
        for i in range(60) for day in [rng.randrange(1, 20)]), key=lambda r: r.day)
    latest: dict[str, tuple[int, str, str]] = {}  # the rule, by brute force
    for r in carts:
        for p, name in r.value.names.items():
            latest[p] = max(latest.get(p, (-1, "", "")), (r.value.last, r.key, name))
    by_day = [list(g) for _, g in groupby(carts, key=lambda r: r.day)]
    names = list_parts.merge_cart_names([list_parts.cart_names_part(d) for d in by_day])
    assert names == {p: m[2] for p, m in latest.items()} and names
    products = [Record("o", 1, AbandonedProduct.KIND, f"{s}|2026-02-01|{p}", "2026-02-01", AbandonedProduct(s, p, n))
                for s, p, n in (("web", "p1", 3), ("shop", "p1", 1), ("web", "p2", 2), ("shop", "p2", 2), ("shop", "p4", 1))]
    for given in (None, names):  # the whole period's carts, or the day parts' names
        body = shoppers.carts_summary([], [], products, carts, currency="EUR", rates=None, limit=10, store=None, names=given)
        # the store: the one whose carts hold it most (a tie: the first by id)
        assert body["most_abandoned_products"] == [{"product": p, "name": names.get(p, ""), "store": s, "carts": n}
                                                   for p, s, n in (("p1", "web", 4), ("p2", "shop", 4), ("p4", "shop", 1))]
    body = shoppers.carts_summary([], [], products, carts, currency="EUR", rates=None, limit=10, store="web", names=names)
    assert [(r["product"], r["store"], r["carts"]) for r in body["most_abandoned_products"]] == [("p1", "web", 3), ("p2", "web", 2)]
