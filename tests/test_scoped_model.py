"""A share link of some stores reads the read model through ScopedModel: a real SQLite read model,
written as the dataflow writes it, read back with only those stores' buckets and records."""

from __future__ import annotations

from pathlib import Path

from msgspec import Raw

from core.changes import DAY, Bucket, Record
from core.records import Customer, CustomerMoney, Order, QuotaAlert, RecordKind
from state.sqlite_readmodel import SqliteReadModel
from ws_gateway.scoped import ScopedModel


def order(store: str, key: str) -> Record[Order]:
    value = Order(store, key, "c1", "web", 1767261600000, 1767261600000, "EUR", 1000, 0, False, Raw(b'[["p1",2,500,"Mug"]]'))
    return Record("o", 2, RecordKind.ORDER, f"{store}:{key}", "2026-01-01", value)


def customer(key: str, first_seen_at: str, money: list[CustomerMoney]) -> Record[Customer]:
    value = Customer(key, first_seen_at, None, 1, 1, None, None, None, sum(m.orders for m in money),
                     sum(m.items for m in money), None, None, money)
    return Record("o", 2, RecordKind.CUSTOMER, key, "1970-01-01", value)


def money(store: str, orders: int) -> CustomerMoney:
    return CustomerMoney(store, "EUR", orders, orders, 100 * orders, 0, 1, 2)


def test_only_the_links_stores_are_seen(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "rm.sqlite3")
    mixed = customer("mixed", "a", [money("a", 1), money("b", 5)])
    model.write([
        Bucket("o", 2, DAY, "2026-01-01", "a", "EUR", 100, 0, 1, 1, 1),
        Bucket("o", 2, DAY, "2026-01-01", "b", "EUR", 900, 0, 9, 9, 9),
        order("a", "o1"), order("b", "o2"), order("c", "o3"),
        mixed, customer("elsewhere", "b", [money("b", 2)]), customer("registered", "a", []),
        customer("came-back", "b", [money("a", 3)]),
        Record("o", 2, RecordKind.QUOTA_ALERT, "80", "", QuotaAlert(80, 800, 1000, 1)),
    ])
    seen = ScopedModel(model, frozenset({"a", "c"}))
    assert seen.snapshot("o", DAY) == (2, [Bucket("o", 2, DAY, "2026-01-01", "a", "EUR", 100, 0, 1, 1, 1)])
    assert [r.key for r in seen.records("o", Order)] == ["a:o1", "c:o3"]
    customers = {r.key: r.value for r in seen.records("o", Customer)}
    assert set(customers) == {"mixed", "registered", "came-back"}  # "elsewhere" has nothing at a or c
    assert customers["mixed"].money == [money("a", 1)]  # its 5 orders at b are not shown
    assert customers["came-back"].money == [money("a", 3)]
    assert seen.records("o", QuotaAlert) == []  # the organisation's, not a store's
    whole = {r.key: r.value for r in model.records("o", Customer)}
    assert whole["mixed"].money == [money("a", 1), money("b", 5)]  # the model itself is untouched
    model.close()
