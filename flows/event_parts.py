"""An event as a short positional list, and back: how a kept step's event is packed in the snapshot
files (flows/segment_states.py). Pure.

The log's JSON of an order with one item is ~400 bytes, most of it field names and defaults
(`"refund":null,"visitor":null,...`); a customer inside the lateness holds one per kept step, so the
steps were two thirds of a snapshot's bytes at 2,000 orders/s (bench/snapshot_cost.py). Here an
event is [mask, the fields that differ from their default, in field order] (bit i of the mask: the
i-th field of EVENT_FIELDS is given), an item likewise; custom fields (`attrs`) stay JSON, so they
come back exactly as the log's JSON gives them. 67 bytes for that order.

`event_from_parts(event_parts(e))` equals `event_from_json(e.to_json())` (tests/test_event_parts.py);
`event_parts` returns None for an event the log's JSON could not hold either (a caller then keeps it
its own way).
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from itertools import compress
from operator import attrgetter, ne
from typing import Any

import orjson

from core.events import SCHEMA_VERSION, Event, Item, Kind, SchemaError, Source

# The fields in their packed order: a field added to Event or Item must be added at the END here (the
# mask's bits name them), or tests/test_event_parts.py fails.
EVENT_FIELDS = ("id", "kind", "org", "store", "time", "amount", "currency", "customer", "order", "refund", "items",
                "source", "raw_id", "cart", "visitor", "campaign", "name", "presentment_amount",
                "presentment_currency", "attrs", "v")
ITEM_FIELDS = ("product", "qty", "unit_price", "name", "category", "brand")
_NONE = object()  # a required field: no default, always given


def _defaults(cls: type, names: tuple[str, ...]) -> tuple[object, ...]:
    by_name = {f.name: f for f in fields(cls)}
    out: list[object] = []
    for name in names:
        f = by_name[name]
        out.append(f.default if f.default is not MISSING else
                   f.default_factory() if f.default_factory is not MISSING else _NONE)
    return tuple(out)


_EVENT_DEFAULTS = _defaults(Event, EVENT_FIELDS)
_ITEM_DEFAULTS = _defaults(Item, ITEM_FIELDS)
_ITEMS, _ATTRS, _KIND, _SOURCE = (EVENT_FIELDS.index(n) for n in ("items", "attrs", "kind", "source"))


_event_values = attrgetter(*EVENT_FIELDS)
_item_values = attrgetter(*ITEM_FIELDS)
_EVENT_BITS = tuple(1 << i for i in range(len(EVENT_FIELDS)))
_ITEM_BITS = tuple(1 << i for i in range(len(ITEM_FIELDS)))
_INTS = tuple(EVENT_FIELDS.index(n) for n in ("time", "amount", "presentment_amount", "v"))


def _item(item: Item) -> list[Any] | None:
    values = _item_values(item)
    given = list(map(ne, values, _ITEM_DEFAULTS))  # a required field's default (_NONE) is never equal
    if not (_fits(item.qty) and _fits(item.unit_price)):
        return None
    return [sum(compress(_ITEM_BITS, given)), *compress(values, given)]


def event_parts(e: Event) -> list[Any] | None:
    """The event as [mask, given fields...]; None if it holds what the log's JSON cannot (a Decimal in
    its custom fields, an integer beyond 64 bits: only events that were never read from the log)."""
    if type(e) is not Event:
        return None
    values = list(_event_values(e))  # in C: this runs once per kept step, 2,000 times a second
    given = list(map(ne, values, _EVENT_DEFAULTS))
    if not all(_fits(values[i]) for i in _INTS):
        return None
    values[_KIND], values[_SOURCE] = values[_KIND].value, values[_SOURCE].value
    if given[_ITEMS]:
        if any(type(i) is not Item for i in e.items):
            return None
        items = [_item(i) for i in e.items]
        if None in items:
            return None
        values[_ITEMS] = items
    if given[_ATTRS]:
        try:
            values[_ATTRS] = orjson.dumps(values[_ATTRS])
        except TypeError:
            return None
    return [sum(compress(_EVENT_BITS, given)), *compress(values, given)]


def _fits(v: object) -> bool:
    """Not an integer MessagePack cannot hold (nor the log's JSON)."""
    return not isinstance(v, int) or -(2**63) <= v < 2**64


def _filled(mask: int, given: list[Any], names: tuple[str, ...], defaults: tuple[object, ...]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    values = iter(given)
    for i, name in enumerate(names):
        d[name] = next(values) if mask >> i & 1 else defaults[i]
    return d


def event_from_parts(parts: list[Any]) -> Event:
    """The event `event_parts` gave (built as core/events.py builds one from the log's JSON)."""
    d = _filled(parts[0], parts[1:], EVENT_FIELDS, _EVENT_DEFAULTS)
    if d["v"] != SCHEMA_VERSION:
        raise SchemaError(f"event schema version {d['v']!r} is not supported (expected {SCHEMA_VERSION})")
    d["kind"] = Kind(d["kind"])
    d["source"] = Source(d["source"])
    d["attrs"] = orjson.loads(d["attrs"]) if parts[0] >> _ATTRS & 1 else {}
    items = []
    for item in d["items"]:
        obj: Any = object.__new__(Item)
        obj.__dict__.update(_filled(item[0], item[1:], ITEM_FIELDS, _ITEM_DEFAULTS))
        items.append(obj)
    d["items"] = tuple(items)
    event: Any = object.__new__(Event)
    event.__dict__.update(d)
    return event  # type: ignore[no-any-return]
