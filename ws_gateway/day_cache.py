"""What the read API computed from one day's records, kept while that day's records stay as they were.

A list over a period (the orders, products, pairs and carts of 90 days: 1M orders at the scale of
bench/read_api.py) is a merge of per-day parts. The read model stamps each (organisation, kind, day)
with a number that changes whenever a write changes that day's records (state/day_stamps.py); a part
is recomputed only when its day's stamp moved, so a live shop recomputes today and reuses the 89 days
before it. The stamps are read before the records: a write landing in between leaves a part computed
from newer records under an older stamp, which only makes the next request recompute it.

A read model without stamps (Redis, a share link's scoped view) gets one part for the whole period,
computed each time, so the answer is the same whichever model serves it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from core.changes import Record
from core.records import Value
from state.day_stamps import DayStamped
from state.readmodel import ReadModel

V = TypeVar("V", bound=Value)
T = TypeVar("T")

DAY_PARTS = 4_000  # parts kept, least recently used dropped: 90 days of several lists and currencies


class DayCache:
    def __init__(self, most: int = DAY_PARTS) -> None:
        self.most = most
        self._parts: OrderedDict[tuple[Hashable, ...], tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()  # requests compute in worker threads

    def parts(self, model: ReadModel, org: str, kind: type[V], first: str, last: str, variant: Hashable,
              compute: Callable[[list[Record[V]]], T]) -> list[T]:
        """`compute` of each day's records of `kind` in [first, last], in day order (one part for the
        whole period when the model has no stamps). `variant` names what else `compute` depends on
        (currency, store, ...): parts of different variants are kept apart."""
        if not isinstance(model, DayStamped):
            return [compute(model.records(org, kind, first, last))]
        out = []
        for day, stamp in sorted(model.day_stamps(org, kind, first, last).items()):
            key = (org, kind.KIND, variant, day)
            with self._lock:
                kept = self._parts.get(key)
            if kept is None or kept[0] != stamp:
                kept = (stamp, compute(model.records(org, kind, day, day)))
            with self._lock:
                self._parts[key] = kept
                self._parts.move_to_end(key)
                while len(self._parts) > self.most:
                    self._parts.popitem(last=False)
            out.append(kept[1])
        return out

    @staticmethod
    def stamps(model: ReadModel, org: str, kind: type[V], first: str, last: str) -> tuple[tuple[str, int], ...] | None:
        """The stamps of the kind's days in [first, last] (None: the model has none), for `answer`'s key."""
        if not isinstance(model, DayStamped):
            return None
        return tuple(sorted(model.day_stamps(org, kind, first, last).items()))

    def answer(self, key: tuple[Hashable, ...] | None, compute: Callable[[], T]) -> T:
        """`compute()`, kept under `key` (which holds the stamps of every day it read; None: never kept).
        For what no merge of day parts gives cheaply (customers' totals over a period)."""
        if key is None:
            return compute()
        with self._lock:
            kept = self._parts.get(("answer", *key))
        if kept is None:
            kept = (0, compute())
            with self._lock:
                self._parts[("answer", *key)] = kept
                while len(self._parts) > self.most:
                    self._parts.popitem(last=False)
        return kept[1]
