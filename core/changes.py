"""The change feed's types: what the dataflow writes to the read model and the gateway follows.

A change is a `Bucket` (revenue figures of a day or hour) or a `Record` (the state of one entity,
its value one of core/records.py's kinds). Each is an absolute value (never an increment) with the
organisation's version at which it was produced, so writing it twice, or out of order, leaves the
read model right. A change-feed message is the JSON array of the changes one write applied for one
organisation; the functions here are its only encoder and decoder.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from msgspec import Raw, Struct

from core.records import RecordKind, Value, value_types

__all__ = ["Bucket", "Change", "DAY", "HOUR", "Record", "bucket_from_json", "changes_from_json", "changes_to_json",
           "record_from_json", "value_from_json"]

DAY, HOUR = "day", "hour"
V = TypeVar("V", bound=Value, covariant=True)
W = TypeVar("W", bound=Value)


class Bucket(Struct, frozen=True, gc=False):
    org: str
    version: int  # the organisation's change version that produced this value
    grain: str  # DAY: `start` is the local ISO date; HOUR: `start` is the UTC hour, "YYYY-MM-DDTHH"
    start: str
    store: str
    currency: str
    gross: int  # minor units: value of orders paid in the bucket
    refunds: int  # minor units refunded in the bucket (whatever bucket the order was paid in)
    orders: int  # orders placed (paid or not) in the bucket
    paid_orders: int
    items: int  # units on the orders paid in the bucket

    @property
    def key(self) -> str:
        return f"{self.grain}|{self.store}|{self.start}|{self.currency}"

    def to_json(self) -> bytes:
        return _encode(self)


class Record(Struct, Generic[V], frozen=True, gc=False):
    """The current state of one entity the dataflow keeps (an order, ...), as an absolute value.

    `day` is the organisation-local day the entity belongs to in period queries (an order: the day it
    was paid, or placed if unpaid), so the read side can select a period without reading all.
    `kind` is always `value.KIND`: it is stored, and the read side selects by it.
    """

    org: str
    version: int
    kind: RecordKind
    key: str
    day: str
    value: V

    def to_json(self) -> bytes:
        return _encode(self)

    def value_json(self) -> bytes:
        return _encode(self.value)


Change = Bucket | Record[Any]

_encode = msgspec.json.Encoder().encode
_BUCKET = msgspec.json.Decoder(Bucket)
_KINDS = value_types()
_VALUES: dict[type[Value], msgspec.json.Decoder[Any]] = {cls: msgspec.json.Decoder(cls) for cls in _KINDS.values()}
_RECORDS: dict[str, msgspec.json.Decoder[Any]] = {kind: msgspec.json.Decoder(Record[cls])  # type: ignore[valid-type]  # a class chosen at run time, as msgspec wants it
                                                  for kind, cls in _KINDS.items()}


class _Head(Struct):
    """A change-feed item's kind, read first (msgspec skims the rest): buckets and records share no
    tag, and the kind says which value class the rest decodes into."""

    kind: str | None = None  # only a record has one


_HEAD = msgspec.json.Decoder(_Head)
_ITEMS = msgspec.json.Decoder(list[Raw])


def bucket_from_json(data: bytes | str) -> Bucket:
    return _BUCKET.decode(data)


def value_from_json(cls: type[W], data: bytes | str) -> W:
    """A record's value of class `cls`, as `Record.value_json` wrote it (the SQLite read model's column)."""
    return _VALUES[cls].decode(data)  # type: ignore[no-any-return]  # the decoder for cls, from a dict of Decoder[Any]


def record_from_json(cls: type[W], data: bytes | str) -> Record[W]:
    """A whole record whose value is of class `cls`, as `Record.to_json` wrote it."""
    return _RECORDS[cls.KIND].decode(data)  # type: ignore[no-any-return]  # the decoder for cls, from a dict of Decoder[Any]


def changes_to_json(changes: list[Change]) -> bytes:
    """A change-feed message: the JSON array of `changes`, each as its `to_json` (one encoder call for all)."""
    return _encode(changes)


def changes_from_json(data: bytes | str) -> list[Change]:
    """A change-feed message: the JSON array of the changes one write applied for one organisation.

    A record of a kind this version does not know (written by a newer dataflow) is left out: nothing
    here could read it, and one must not stop the feed."""
    out: list[Change] = []
    for raw in _ITEMS.decode(data):
        kind = _HEAD.decode(raw).kind
        if kind is None:
            out.append(_BUCKET.decode(raw))
        elif kind in _RECORDS:
            out.append(_RECORDS[kind].decode(raw))
    return out
