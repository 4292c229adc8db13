"""Definitions (segments; automations may follow) carried through the event log as control events.

A definition is put or deleted by appending one event to the organisation's log, so every worker,
a replay and a recovery see the same definition at the same point of the stream:

    Event(id="def_<unique>", kind="definition.put", org, store="", time=<wall clock ms>,
          name="<type>/<id>", attrs=<the definition's body>)
    Event(..., kind="definition.deleted", name="<type>/<id>", attrs={})

A control event names no store or customer; its time is when it was made, and it moves no
watermark (flows/organisation.py): a definition made today must not make yesterday's replayed
history "too late". Pure: no I/O, no clock (time and the unique id come in as arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.events import Event, Kind
from core.rules.criteria import Subject
from core.rules.library import CUSTOMER_SEGMENTS, PRODUCT_SEGMENTS, Thresholds, rules

CONTROL = frozenset({Kind.DEFINITION_PUT, Kind.DEFINITION_DELETED})
SEGMENT = "segment"


@dataclass(frozen=True, slots=True)
class SegmentDefinition:
    """A customer segment: its id, display name and rule (JSON, as parse_rule takes it)."""

    id: str
    name: str
    rule: dict[str, Any] = field(hash=False)
    predefined: bool = False


@dataclass(frozen=True, slots=True)
class Definition:
    """What a control event says: `body` None when the definition is deleted."""

    type: str  # "segment", ...
    id: str
    body: dict[str, Any] | None


def is_control(event: Event) -> bool:
    return event.kind in CONTROL


def put_event(org: str, type_: str, id_: str, body: dict[str, Any], now_ms: int, unique: str) -> Event:
    """The control event that creates or replaces definition `type_/id_` with `body`."""
    return Event(id=f"def_{unique}", kind=Kind.DEFINITION_PUT, org=org, store="", time=now_ms,
                 name=f"{type_}/{id_}", attrs=dict(body))


def delete_event(org: str, type_: str, id_: str, now_ms: int, unique: str) -> Event:
    """The control event that deletes definition `type_/id_`."""
    return Event(id=f"def_{unique}", kind=Kind.DEFINITION_DELETED, org=org, store="", time=now_ms,
                 name=f"{type_}/{id_}")


def read_definition(event: Event) -> Definition | None:
    """The definition a control event puts or deletes; None for any other event (or a malformed name)."""
    if event.kind not in CONTROL:
        return None
    type_, sep, id_ = event.name.partition("/")
    if not sep or not type_ or not id_:
        return None
    return Definition(type_, id_, dict(event.attrs) if event.kind is Kind.DEFINITION_PUT else None)


def segment_of(definition: Definition) -> SegmentDefinition | None:
    """A put segment's definition from a control event's body {"name", "rule"}; None if malformed."""
    body = definition.body
    if definition.type != SEGMENT or body is None:
        return None
    name, rule = body.get("name"), body.get("rule")
    if not isinstance(name, str) or not isinstance(rule, dict):
        return None
    return SegmentDefinition(definition.id, name, rule)


def predefined_segments(thresholds: Thresholds = Thresholds()) -> dict[str, SegmentDefinition]:
    """The library's customer segments (core/rules/library.py), thresholds filled in."""
    filled = rules(Subject.CUSTOMER, thresholds)
    return {p.id: SegmentDefinition(p.id, p.name, filled[p.id], predefined=True)
            for p in CUSTOMER_SEGMENTS if p.id in filled}


def predefined_rules(thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    return {s.id: s.rule for s in predefined_segments(thresholds).values()}


def predefined_product_segments(thresholds: Thresholds = Thresholds()) -> dict[str, SegmentDefinition]:
    """The library's product segments, thresholds filled in (a featured category or brand not set: left out)."""
    filled = rules(Subject.PRODUCT, thresholds)
    return {p.id: SegmentDefinition(p.id, p.name, filled[p.id], predefined=True)
            for p in PRODUCT_SEGMENTS if p.id in filled}
