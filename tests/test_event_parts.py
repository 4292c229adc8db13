"""An event packed for a kept step (flows/event_parts.py) comes back as the log's JSON gives it back,
in a fraction of the JSON's bytes; what the JSON cannot hold is refused, not changed."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Event, Item, Kind, Source, event_from_json
from flows.event_parts import EVENT_FIELDS, ITEM_FIELDS, event_from_parts, event_parts

pytestmark = pytest.mark.unit

text = st.text(max_size=12)
maybe = st.none() | text
money = st.integers(-(2**63), 2**64 - 1)
items = st.builds(Item, text, money, money, text, text, text)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6)
events = st.builds(Event, text, st.sampled_from(list(Kind)), text, text, st.integers(0, 2**62), amount=money,
                   currency=text, customer=maybe, order=maybe, refund=maybe,
                   items=st.lists(items, max_size=3).map(tuple), source=st.sampled_from(list(Source)), raw_id=text,
                   cart=maybe, visitor=maybe, campaign=maybe, name=text, presentment_amount=st.none() | money,
                   presentment_currency=maybe, attrs=st.dictionaries(text, json_values, max_size=4))


@settings(max_examples=300, deadline=None)
@given(events)
def test_an_event_comes_back_as_the_logs_json_gives_it_back(e: Event) -> None:
    parts = event_parts(e)
    assert parts is not None
    back = event_from_parts(msgspec.msgpack.decode(msgspec.msgpack.encode(parts)))
    from_log = event_from_json(e.to_json())
    assert back == from_log and vars(back) == vars(from_log)
    assert [type(i) for i in back.items] == [Item] * len(e.items) and type(back.items) is tuple


def test_an_order_packs_to_a_fifth_of_its_json() -> None:
    e = Event(id="e123", kind=Kind.ORDER_PAID, org="acme", store="site", time=1_796_600_000_000, amount=2000,
              currency="EUR", order="o123", customer="c123", items=(Item("mug", 1, 2000),))
    assert len(msgspec.msgpack.encode(event_parts(e))) * 5 < len(e.to_json())


def test_what_the_logs_json_cannot_hold_is_refused() -> None:
    base = Event(id="e", kind=Kind.ORDER_PAID, org="o", store="s", time=1)
    assert event_parts(Event(**{**vars(base), "attrs": {"x": Decimal("0.1")}})) is None
    assert event_parts(Event(**{**vars(base), "amount": 2**64})) is None
    assert event_parts(Event(**{**vars(base), "items": (Item("p", 1, -(2**63) - 1),)})) is None


def test_the_packed_order_names_every_field_of_an_event_and_an_item() -> None:
    """A field added to Event or Item must be added (at the end) to the packed order, or it is lost."""
    assert sorted(EVENT_FIELDS) == sorted(f.name for f in fields(Event))
    assert sorted(ITEM_FIELDS) == sorted(f.name for f in fields(Item))
