"""flows/storable.py: the planned 64-bit check finds an integer beyond 64 bits wherever a record kind's
types let one be (plain, optional, in lists of tuples, nested structs, dict values), and nowhere else."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from msgspec import Raw, Struct

from core.changes import Record
from core.records import Cart, Customer, CustomerMoney, Late, LateBook, Order, RecordKind, value_types
from core.segment_records import SegmentChange, SegmentMember
from flows.quarantine import unstorable
from flows.storable import HI, LO, PLANS, fits

pytestmark = pytest.mark.unit

BEYOND = (HI + 1, LO - 1, 2**80)
ORDER = Order("s", "o1", "c1", "web", 1, 2, "EUR", 1000, 0, False, Raw(b'[["p1",2,500,"Mug"]]'))
MONEY = CustomerMoney("s", "EUR", 1, 2, 1000, 0, 1, 2)
CUSTOMER = Customer("c1", "s", None, 1, 1, None, None, None, 1, 2, 1, 2, [MONEY])
CART = Cart("s", "k1", "c1", "open", "EUR", 1000, [("p1", 2, 500)], 1, 2, None, None)
LATE = Late("s", {"carts": LateBook(3, 4, "e1")})
MEMBER = SegmentMember("vip", "c1", True, 5)
CHANGE = SegmentChange("vip", "c1", "entered", 5, "e1")


def _replace(struct: Struct, **fields: Any) -> Struct:
    return msgspec.structs.replace(struct, **fields)


@pytest.mark.parametrize("value", [ORDER, CUSTOMER, CART, LATE, MEMBER, CHANGE])
def test_values_within_64_bits_fit(value: Struct) -> None:
    assert fits(value)
    assert fits(_replace(MEMBER, entered=None)) and fits(_replace(ORDER, placed=HI, paid=LO))


@pytest.mark.parametrize("n", BEYOND)
@pytest.mark.parametrize(("value", "field"), [
    (ORDER, "amount"), (ORDER, "placed"), (ORDER, "refunded"), (CUSTOMER, "orders"), (CUSTOMER, "last_paid"),
    (CART, "value"), (CART, "due"), (MEMBER, "entered"), (CHANGE, "at"),
])
def test_an_integer_beyond_64_bits_in_any_int_field_is_found(value: Struct, field: str, n: int) -> None:
    assert not fits(_replace(value, **{field: n}))


@pytest.mark.parametrize("n", BEYOND)
def test_integers_inside_lists_tuples_nested_structs_and_dicts_are_found(n: int) -> None:
    assert not fits(_replace(CART, items=[("p1", 1, 1), ("p2", n, 1)]))
    assert not fits(_replace(CART, items=[("p1", 1, n)]))
    assert not fits(_replace(CUSTOMER, money=[MONEY, _replace(MONEY, gross=n)]))
    assert not fits(_replace(LATE, books={"carts": LateBook(1, n, "e")}))


def test_strings_booleans_and_raw_json_are_not_read() -> None:
    # raw JSON is stored as given (its integers are the event's, checked by core.limits), strings are strings
    assert fits(_replace(ORDER, items=Raw(b"[[\"p\", 1180591620717411303424, 1, \"x\"]]")))
    assert fits(_replace(CHANGE, cause="1180591620717411303424"))


def test_every_record_kind_has_a_plan_and_unstorable_names_the_record() -> None:
    assert set(value_types()) == set(RecordKind)
    assert set(value_types().values()) <= set(PLANS)  # planned at import
    big = Record("o", 3, RecordKind.SEGMENT_CHANGE, "vip|c1|5|entered", "vip|x", _replace(CHANGE, at=2**64))
    fine = Record("o", 3, RecordKind.ORDER, "s:o1", "2026-01-01", ORDER)
    assert unstorable([fine]) is None
    assert unstorable([fine, big]) == "the segment_change record 'vip|c1|5|entered' would hold an integer beyond 64 bits"
