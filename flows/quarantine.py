"""Poison events: what the dataflow does with an event it cannot fold. Pure.

An event is quarantined instead of folded when
- it is outside core.limits (`out_of_range`): appended before the rule existed, or by a path that
  forgot it; checked before folding, a few comparisons per event;
- its row in the log cannot be read back as an event (`unreadable`);
- folding it raises, or would give a figure storage cannot hold, an integer beyond 64 bits
  (`fold_failed`). The organisation's state is then rolled back to before the event
  (flows/dataflow.py), so its figures are those of the log without it.

Every other event, of this organisation and of every other, is folded as usual: one sender cannot
stop anyone's figures. A quarantined event is kept as a `Quarantined` record in the read model
(the event, the reason and the error), which the read API lists and the connections' monitoring
counts; the dataflow also counts it in a metric and logs it. The log keeps the event itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from msgspec import Raw

from core.changes import Bucket, Change, Record
from core.events import Event
from core.limits import MAX_TIME_MS
from core.records import Quarantined, RecordKind
from flows.book import Days
from flows.storable import PLANS, plan

OUT_OF_RANGE, UNREADABLE, FOLD_FAILED = "out_of_range", "unreadable", "fold_failed"
REASONS = (OUT_OF_RANGE, UNREADABLE, FOLD_FAILED)
KEPT_BODY = 64 * 1024  # bytes of an unreadable row kept in its record
_LO, _HI = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A log row of `org` that is not an event this storepulse can read."""

    org: str
    id: str
    store: str
    body: bytes
    error: str


class Unstorable(ValueError):
    """A change holds a value the read model cannot store."""


def record(org: str, version: int, days: Days, poison: Event | Unreadable, reason: str, error: str) -> Record[Quarantined]:
    """The read-model record of a quarantined event. Its day is the event's local day when the event
    has a usable time, else "" (listed with every period's "all")."""
    if isinstance(poison, Unreadable):
        text = poison.body[:KEPT_BODY].decode("utf-8", "replace")
        value = Quarantined(poison.id, poison.store, None, None, Raw(orjson.dumps(text)), reason, error)
        day = ""
    else:
        t = poison.time
        usable = type(t) is int and 0 <= t < MAX_TIME_MS
        day = days.of(t) if usable else ""
        value = Quarantined(poison.id, poison.store, str(poison.kind), t if usable else None, _event_json(poison),
                            reason, error)
    return Record(org, version, RecordKind.QUARANTINE, value.id, day, value)


def describe(exc: BaseException) -> str:
    """An exception as its quarantine record says it: `struct.error: ...`, `RuntimeError: ...`."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", __name__) else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {exc}"


def unstorable(changes: Iterable[Change]) -> str | None:
    """Why some change cannot be stored (an integer beyond 64 bits), or None. A record's value is
    checked where its type can hold an integer (flows/storable.py)."""
    plans = PLANS  # the loop runs tens of times per event: one lookup of the value's plan, one call
    for c in changes:
        if type(c) is Bucket:
            for n in (c.gross, c.refunds, c.orders, c.paid_orders, c.items):
                if not _LO <= n <= _HI:
                    return f"the {c.grain} bucket {c.start} of store {c.store!r} would hold {n}, beyond 64 bits"
        elif not (plans.get(type(v := c.value)) or plan(type(v)))(v):  # type: ignore[union-attr]  # a Record: mypy does not narrow on type(c) is
            return f"the {c.kind} record {c.key!r} would hold an integer beyond 64 bits"  # type: ignore[union-attr]  # as above
    return None


def _event_json(e: Event) -> Raw:
    try:
        return Raw(e.to_json())
    except (TypeError, orjson.JSONEncodeError):
        return Raw(orjson.dumps(repr(e)[:KEPT_BODY]))
