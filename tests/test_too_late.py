"""Events too late for a book's horizon (docs/metrics.md, "Events refused as too late"): each book
tallies them per store, the organisation emits a "late" record per store whose tally moved, and the
tallies survive a snapshot, including one written before they were kept per store. Through
`storepulse up` they reach the connection's monitoring: tests/test_ingest_inputs.py."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.changes import Record
from core.config import parse_config
from core.events import Event, Item, Kind
from flows import snapshots
from flows.book import DAY_MS, Refused, TooLate
from flows.organisation import ALLOWED_LATENESS_MS, Organisation
from flows.snapshot_files import SnapshotFiles

pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone

MIN = 60_000
CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n'
                      '[orgs.o.stores.t]\nprovider = "events"\nsecret = "l"\n', {})
NOW = 1_795_338_000_000  # 2026-11-22 10:00 Berlin: the watermark these tests set with their first event


def ev(id_: str, kind: Kind, t: int, store: str = "s", **kw: object) -> Event:
    return Event(id=id_, kind=kind, org="o", store=store, time=t, currency="EUR", **kw)  # type: ignore[arg-type]


def late_records(out: list) -> dict[str, Record]:
    return {r.key: r for r in out if isinstance(r, Record) and r.kind == "late"}


def value(r: Record) -> Any:
    """A record's value as the JSON the read model stores."""
    return msgspec.to_builtins(r.value)


def live() -> Organisation:
    org = Organisation.new(CONFIG.orgs["o"])
    assert late_records(org.apply_all([ev("now", Kind.PAGE_VIEWED, NOW, visitor="v0")], NOW)) == {}
    assert org.watermark == NOW - ALLOWED_LATENESS_MS
    return org


def test_each_book_tallies_what_it_refused_per_store_and_the_batch_emits_it() -> None:
    org = live()
    old = NOW - 9 * DAY_MS  # past the 7 days of carts, journey and attribution; within revenue's 366
    batch = [
        ev("cart-old", Kind.CART_ITEM_ADDED, old, cart="k1", visitor="v1", amount=500, items=(Item("p", 1, 500),)),
        ev("paid-old", Kind.ORDER_PAID, old + MIN, cart="k1", visitor="v1", order="o1", amount=2000),
        ev("view-old", Kind.PAGE_VIEWED, old + 2 * MIN, store="t", visitor="v2"),
        ev("cart-recent", Kind.CART_ITEM_ADDED, NOW - 6 * DAY_MS, cart="k2", visitor="v3", amount=500,
           items=(Item("p", 1, 500),)),  # six days late: still counted everywhere
    ]
    out = org.apply_all(batch, NOW)
    late = late_records(out)
    assert {k: (r.day, r.version) for k, r in late.items()} == {"s": ("", org.version), "t": ("", org.version)}
    assert value(late["s"]) == {"store": "s", "books": {
        "carts": {"count": 2, "last_event_time": old + MIN, "last_event_id": "paid-old"},
        "journey": {"count": 2, "last_event_time": old + MIN, "last_event_id": "paid-old"},
        "attribution": {"count": 1, "last_event_time": old + MIN, "last_event_id": "paid-old"}}}
    assert value(late["t"]) == {"store": "t", "books": {
        "journey": {"count": 1, "last_event_time": old + 2 * MIN, "last_event_id": "view-old"}}}
    # The revenue book took the old payment: it is within the refund horizon.
    assert org.ledger.too_late == 0 and org.ledger.orders["s\x1fo1"].amount == 2000
    assert org.shoppers.too_late == 2 + 3 + 1
    assert org.too_late()["carts"].stores == {"s": Refused(2, old + MIN, "paid-old")}
    # A batch that refuses nothing emits no "late" record; the next refusal emits its store's totals.
    assert late_records(org.apply_all([ev("now2", Kind.PAGE_VIEWED, NOW + MIN, visitor="v0")], NOW)) == {}
    again = late_records(org.apply_all([ev("view-old2", Kind.PAGE_VIEWED, old, visitor="v4")], NOW))
    assert list(again) == ["s"] and value(again["s"])["books"]["journey"] == {
        "count": 3, "last_event_time": old, "last_event_id": "view-old2"}
    assert value(again["s"])["books"]["carts"] == value(late["s"])["books"]["carts"]


def test_an_order_past_the_refund_horizon_is_the_revenue_books() -> None:
    org = live()
    ancient = NOW - 400 * DAY_MS
    out = org.apply_all([ev("paid-ancient", Kind.ORDER_PAID, ancient, order="o9", amount=100, customer="c")], NOW)
    assert value(late_records(out)["s"])["books"] == {
        "revenue": {"count": 1, "last_event_time": ancient, "last_event_id": "paid-ancient"},
        "journey": {"count": 1, "last_event_time": ancient, "last_event_id": "paid-ancient"},
        "attribution": {"count": 1, "last_event_time": ancient, "last_event_id": "paid-ancient"}}
    assert org.ledger.too_late == 1 and org.ledger.orders == {}


def test_the_tallies_survive_a_snapshot_and_an_older_snapshot_keeps_its_counts(tmp_path: Path) -> None:
    org = live()
    org.apply_all([ev("view-old", Kind.PAGE_VIEWED, NOW - 9 * DAY_MS, visitor="v1")], NOW)
    back = snapshots.load(snapshots.save(org, SnapshotFiles(tmp_path, "o")), lambda o: SnapshotFiles(tmp_path, o))
    assert back.too_late() == org.too_late()
    # A snapshot written before refusals were kept per store held one count per book: restored, the
    # counts go on from there and the stores' tallies start empty.
    old_shape = snapshots.load(snapshots.save(org, SnapshotFiles(tmp_path, "o")), lambda o: SnapshotFiles(tmp_path, o))
    for book in (old_shape.shoppers.carts, old_shape.shoppers.journey, old_shape.shoppers.attribution):
        vars(book)["too_late"] = vars(book).pop("late").count
    data = pickle.loads(snapshots.save(old_shape, SnapshotFiles(tmp_path, "o")))
    assert data[0] == snapshots.FORMAT
    restored = snapshots.load(pickle.dumps(data), lambda o: SnapshotFiles(tmp_path, o))
    assert {k: (v.count, v.stores) for k, v in restored.too_late().items()} == {
        "revenue": (0, {}), "carts": (0, {}), "journey": (1, {}), "attribution": (0, {})}
    ledger_state = restored.ledger.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[2]
    ledger_state[1]["too_late"] = 4
    del ledger_state[1]["late"]
    restored.ledger.__setstate__(ledger_state)
    assert restored.ledger.late == TooLate(4)
    refused = late_records(restored.apply_all([ev("cart-old", Kind.CART_ITEM_ADDED, NOW - 9 * DAY_MS, cart="k",
                                                  visitor="v", amount=1, items=(Item("p", 1, 1),))], NOW))
    assert value(refused["s"])["books"]["journey"] == {"count": 1, "last_event_time": NOW - 9 * DAY_MS,
                                                      "last_event_id": "cart-old"}
    assert restored.too_late()["journey"].count == 2
