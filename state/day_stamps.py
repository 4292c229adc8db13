"""What a read model may offer beside `ReadModel`: a stamp per day of a record kind, which changes
whenever a write changes that day's records. The read side keeps what it computed from one day's
records while that day's stamp stands (ws_gateway/day_cache.py), so a 90-day list recomputes the
days that changed (today, mostly), not 90 days of orders. Both read models keep one (a count of the
applied writes that touched the day: SQLite's record_days, Redis's stamps hash); a model without (a
share link's scoped view) is read whole each time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

from core.changes import Record
from core.figures import OPEN_END
from core.records import Value

V = TypeVar("V", bound=Value)

# Kinds no read model stamps: segment members and changes. Their "day" is their segment (a change's: its
# segment and instant, core/segment_records.py), no list computes day parts of them, and they are three in
# four records written with live segments: a stamp would be a write per write for nobody.
# (state/sqlite_readmodel.py keeps them apart, in unstamped_records.)
UNSTAMPED = frozenset({"segment_member", "segment_change"})


@runtime_checkable
class DayStamped(Protocol):
    def day_stamps(self, org: str, kind: type[Value], first: str = "", last: str = OPEN_END) -> dict[str, int]:
        """Per day in [first, last] that holds records of the kind, its stamp: equal stamps, equal records."""
        ...


@runtime_checkable
class DayVersioned(Protocol):
    """What a read model may offer beside its stamps: which records a day holds at which version, and
    records by key, so that the read side updates a day's part from the records changed since it was
    computed without reading the others (ws_gateway/day_cache.py). SQLite's does; without it the day's
    records are read whole and compared by version (Redis)."""

    def day_versions(self, org: str, kind: type[Value], day: str) -> dict[str, int]:
        """Every record of the kind whose day is `day`: key -> version (a write that applies raises it)."""
        ...

    def records_by_key(self, org: str, kind: type[V], keys: Sequence[str]) -> list[Record[V]]:
        """The records of the kind with these keys (whatever their day; a key not found is left out)."""
        ...


@runtime_checkable
class Identified(Protocol):
    """A read model whose stamps may be remembered past the process: equal stamps mean equal records only
    within one model, and a model rebuilt (a new SQLite file, a flushed Redis) counts its writes from
    nothing again (ws_gateway/kept_file.py keeps parts across restarts under this identity)."""

    def identity(self) -> str:
        """Made when the model was created, the same for every process that opens it."""
        ...
