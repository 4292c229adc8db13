"""The read model as a share link of some stores sees it (ws_gateway/sharing.py): the buckets and
records of those stores only, so every endpoint's totals are those stores' totals and nothing of the
organisation's other stores shows. A customer's profile keeps only its money at those stores (the
lists recompute orders, items, revenue and first/last paid from it), and is left out when it has
none there and was first seen elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from msgspec import structs

from core.changes import Bucket, Change, Record, V
from core.figures import OPEN_END
from core.records import Customer
from state.readmodel import ReadModel


class ScopedModel:
    def __init__(self, model: ReadModel, stores: frozenset[str]) -> None:
        self.model = model
        self.stores = stores

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        version, buckets = self.model.snapshot(org, grain)
        return version, [b for b in buckets if b.store in self.stores]

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        found = self.model.records(org, kind, first, last)
        if kind is Customer:
            return [r for r in (self._customer(c) for c in found) if r is not None]
        # every record kind but the quota's alerts names its store; a kind without one is not shown
        return [r for r in found if getattr(r.value, "store", None) in self.stores]

    def _customer(self, r: Record[V]) -> Record[V] | None:
        v = r.value
        assert isinstance(v, Customer)
        money = [m for m in v.money if m.store in self.stores]
        if not money and v.store not in self.stores:
            return None
        return structs.replace(r, value=structs.replace(v, money=money)) if len(money) != len(v.money) else r

    def caught_up_at(self, org: str) -> int | None:
        return self.model.caught_up_at(org)

    # what a read endpoint never calls: a scoped view writes nothing and follows no feed
    def write(self, changes: Sequence[Change]) -> None:
        raise PermissionError("a share link's view of the read model is read-only")

    def caught_up(self, at: dict[str, int]) -> None:
        raise PermissionError("a share link's view of the read model is read-only")

    def feed(self) -> AsyncIterator[list[Change] | None]:
        raise PermissionError("a share link's view of the read model has no change feed")

    def close(self) -> None:
        pass
