"""core/pickled.py: instances pickle as their constructor's arguments and come back equal."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest
from msgspec import Raw

from core.pickled import by_fields
from core.records import Order
from ws_gateway.lists import Lifetime, Paid, PeriodCustomer

pytestmark = pytest.mark.unit


def test_the_read_sides_many_instances_come_back_equal_and_as_their_arguments() -> None:
    order = Order(store="web", order="o1", customer="c1", source="web", placed=1, paid=5, currency="EUR", amount=1234,
                  refunded=0, cancelled=False, items=Raw(b'[["p1", 2, 617, "Tea"]]'))
    for value in (Lifetime("c1", "web", 1, None, "a@b.example", None, 2, 3, 4000, 0, 10, 20),
                  PeriodCustomer(100, 1, 2, 5, None),
                  Paid("web:o1", order, "2026-11-22", 5, 1234, (("p1", "Tea", 2, 1234),))):
        again = pickle.loads(pickle.dumps(value, protocol=5))
        assert again == value and type(again) is type(value)
        assert value.__reduce__()[0] is type(value)  # the class, called with the fields: no state dict


def test_a_class_with_a_field_outside_init_is_refused() -> None:
    @dataclass
    class Partly:
        a: int
        b: list[int] = field(default_factory=list, init=False)

    with pytest.raises(TypeError, match="__init__ arguments"):
        by_fields(Partly)
