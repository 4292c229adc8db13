"""What the read API computed from one day's records, kept while that day's records stay as they were.

A list over a period (the orders, products, pairs and carts of 90 days: 1M orders at the scale of
bench/read_api.py) is a merge of per-day parts. The read model stamps each (organisation, kind, day)
with a number that changes whenever a write changes that day's records (state/day_stamps.py); a part
is recomputed only when its day's stamp moved, so a live shop recomputes today and reuses the 89 days
before it. The stamps are read before the records: a write landing in between leaves a part computed
from newer records under an older stamp, which only makes the next request recompute it.

A read model without stamps (a share link's scoped view) gets one part for the whole period,
computed each time, so the answer is the same whichever model serves it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.changes import Record
from core.records import Value
from state.day_stamps import DayStamped, DayVersioned
from state.readmodel import ReadModel

V = TypeVar("V", bound=Value)
T = TypeVar("T")
VC = TypeVar("VC", bound=Value)
TC = TypeVar("TC")
DC = TypeVar("DC")



def memory_bytes() -> int:
    """The memory this process may use: the container's limit (cgroup v2) when there is one, else the
    machine's."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            return int(limit)
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


# Long-lived state built from parts (ws_gateway/cached_lists.py's best customers: one per organisation,
# currency, store and time zone), weighed by the customers it holds (an entry a profile and one per
# customer of each period kept: ~100-150 B each); the least recently used dropped beyond this. At
# bench/read_api.py's scale (1M customers) one organisation's today, 7d, 30d, 90d and all time weigh ~3M,
# and the periods the overview compares them with (ws_gateway/warm_start.py) as much again: a fixed 4M
# dropped the 30 days' state right after warming it (its first request 2.8 s instead of 35 ms). So a
# twentieth of the memory, between 2M (~0.3 GB) and 16M entries: 8.4M on this 24 GB machine (~1.3 GB).
STATE_ENTRIES = min(max(memory_bytes() // 20 // 150, 2_000_000), 16_000_000)
# What is kept, least recently used dropped beyond it, weighed by the records a part was computed
# from (an answer weighs 1): at bench/read_api.py's scale a part holds ~500 bytes a record, so the
# 2.56M records of one currency's orders, profiles and carts take ~1.2 GB, and this bounds all to ~2 GB.
DAY_RECORDS = 4_000_000
# Days whose parts keep what updating them needs (DayUpdate's detail: every record's version and what each
# counted record brought; an orders part's ~15 MB a day of 8,000 orders, tracemalloc at bench/read_api.py's
# scale), per (organisation, kind, variant): its newest days, where writes land (today, late ones on the
# days before). The newest, not the last used: warming a period before the 90 days must not drop today's.
DETAILS = 4
# A day's part is updated from its changed records when at most this many, or a quarter of its records,
# changed; else computed again from all.
UPDATE_LEAST = 64


class DayUpdate(Protocol[VC, TC, DC]):
    """Builds a day's part with a detail, and updates both from the day's changed records (list_parts.OrdersUpdate)."""

    def build(self, records: list[Record[VC]]) -> tuple[TC, DC]: ...

    def versions(self, detail: DC) -> dict[str, int]:
        """Every record's version the part was computed from."""
        ...

    def update(self, part: TC, detail: DC, changed: list[Record[VC]], gone: Iterable[str]) -> tuple[TC, DC] | None:
        """From the records new or rewritten since (`changed`) and those no longer of the day (`gone`);
        None: not cheaply, compute it from all the day's records."""
        ...


@dataclass(frozen=True, slots=True)
class Kept:
    """A DayCache's contents: parts by (organisation, kind, variant, day) with their stamp and weight, the
    details of the days that keep one, and the long-lived states (best customers, order sums)."""

    parts: dict[tuple[Hashable, ...], tuple[int, Any, int]]
    details: dict[tuple[Hashable, ...], dict[str, tuple[Any, Any]]]
    states: dict[Hashable, tuple[Any, Callable[[Any], int]]]


class DayCache:
    def __init__(self, most: int = DAY_RECORDS, state_entries: int = STATE_ENTRIES, details: int = DETAILS) -> None:
        self.most, self.state_entries, self.details = most, state_entries, details
        self._details: dict[tuple[Hashable, ...], dict[str, tuple[Any, Any]]] = {}  # (org, kind, variant) -> day -> (part, detail)
        self._states: OrderedDict[Hashable, tuple[Any, Callable[[Any], int]]] = OrderedDict()
        self._parts: OrderedDict[tuple[Hashable, ...], tuple[int, Any, int]] = OrderedDict()  # (stamp, part, weight)
        self._weight = 0
        self._lock = threading.Lock()  # requests compute in worker threads
        self._ready = threading.Event()  # cleared while an earlier process's parts come in (`hold`)
        self._ready.set()
        self._changes = 0

    def parts(self, model: ReadModel, org: str, kind: type[V], first: str, last: str, variant: Hashable,
              compute: Callable[[list[Record[V]]], T], weigh: Callable[[T], int] | None = None) -> list[T]:
        """`compute` of each day's records of `kind` in [first, last], in day order (one part for the
        whole period when the model has no stamps). `variant` names what else `compute` depends on
        (currency, store, ...): parts of different variants are kept apart. `weigh`: what a part holds,
        in records, when that is bounded below the records it was computed from (a day's top 1,000)."""
        if not isinstance(model, DayStamped):
            return [compute(model.records(org, kind, first, last))]
        return [part for _, part in self.day_parts(model, org, kind, first, last, variant, compute, weigh=weigh)]

    def day_parts(self, model: ReadModel, org: str, kind: type[V], first: str, last: str, variant: Hashable,
                  compute: Callable[[list[Record[V]]], T], per_record: float = 1.0,
                  update: DayUpdate[V, T, Any] | None = None,
                  weigh: Callable[[T], int] | None = None) -> list[tuple[str, T]]:
        """`parts`, each with its day, from a stamped model. A part is the same object while its day's
        stamp stands (ws_gateway/customer_rank.py tells a recomputed day by that). `per_record`: what
        a part weighs per record it was computed from, if it holds less than most parts do. With
        `update` (which then builds the parts of the days that will keep a detail, `compute` the
        others'), a day whose stamp moved is updated from its records changed since, when few changed
        and its detail is still kept. `weigh` (with no `update`): a part's weight from what it holds."""
        if not isinstance(model, DayStamped):
            raise TypeError(f"{type(model).__name__} keeps no day stamps")
        self._ready.wait()
        stamps = sorted(model.day_stamps(org, kind, first, last).items())
        keys: list[tuple[Hashable, ...]] = [(org, kind.KIND, variant, day) for day, _ in stamps]
        with self._lock:  # once for all days, not twice a day: 730 profile days are read on every request
            found = [self._parts.get(key) for key in keys]
            mine = self._details.get((org, kind.KIND, variant), {})
            # only a day that will keep its detail gets one: among the newest kept, or the period's newest
            oldest = min(mine) if len(mine) >= self.details else ""
            newest = stamps[-self.details][0] if len(stamps) >= self.details else ""
            # a detail goes with the part it was made with (a request that read an older stamp may have
            # put that day's older part back since): else the part is computed from all its records
            details = [d[1] if (d := mine.get(day)) is not None and kept is not None and d[0] is kept[1] else None
                       for (day, _), kept in zip(stamps, found, strict=True)] if update is not None else []
        now: list[tuple[tuple[Hashable, ...], tuple[int, Any, int]]] = []
        made: list[tuple[tuple[Hashable, ...], tuple[Any, Any]]] = []
        for i, ((day, stamp), key, kept) in enumerate(zip(stamps, keys, found, strict=True)):
            if kept is None or kept[0] != stamp:
                if update is None:
                    records = model.records(org, kind, day, day)
                    part = compute(records)
                    kept = (stamp, part, 1 + (int(len(records) * per_record) if weigh is None else weigh(part)))
                elif details[i] is None and day < oldest and day < newest:  # it would not keep a detail
                    records = model.records(org, kind, day, day)
                    kept = (stamp, compute(records), 1 + int(len(records) * per_record))
                else:
                    part, detail, n = self._update(model, org, kind, day, update, kept, details[i])
                    kept = (stamp, part, 1 + int(n * per_record))
                    made.append((key, (part, detail)))
            now.append((key, kept))
        with self._lock:
            for key, kept in now:
                self._keep_locked(key, kept)
            for key, with_part in made:
                if key in self._parts:
                    mine = self._details.setdefault(key[:3], {})
                    mine[str(key[3])] = with_part
                    if len(mine) > self.details:
                        del mine[min(mine)]
        return [(day, kept[1]) for (day, _), (_, kept) in zip(stamps, now, strict=True)]

    @staticmethod
    def _update(model: ReadModel, org: str, kind: type[V], day: str, update: DayUpdate[V, T, Any],
                kept: tuple[int, Any, int] | None, detail: Any) -> tuple[T, Any, int]:
        """The day's part and detail, and how many records it holds: updated from the records whose
        version differs from the detail's (the model says which, or its day's records are read and
        compared), when at most a quarter of them changed; else computed from all."""
        records: list[Record[V]] | None = None
        if kept is not None and detail is not None:
            versioned = model if isinstance(model, DayVersioned) else None
            if versioned is not None:
                versions = versioned.day_versions(org, kind, day)
            else:
                records = model.records(org, kind, day, day)
                versions = {r.key: r.version for r in records}
            had = update.versions(detail)
            changed = [k for k, v in versions.items() if had.get(k) != v]
            gone = [k for k in had if k not in versions]
            if len(changed) + len(gone) <= max(UPDATE_LEAST, len(versions) // 4):
                wanted = set(changed)
                if versioned is None:
                    fresh = [r for r in records or () if r.key in wanted]
                else:  # read by key after the versions: a record may have moved off the day since (gone)
                    fresh = [r for r in versioned.records_by_key(org, kind, changed) if r.day == day]
                    gone += list(wanted.difference(r.key for r in fresh))
                done = update.update(kept[1], detail, fresh, gone)
                if done is not None:
                    return done[0], done[1], len(versions)
        if records is None:
            records = model.records(org, kind, day, day)
        part, detail = update.build(records)
        return part, detail, len(records)

    def _keep(self, key: tuple[Hashable, ...], kept: tuple[int, Any, int]) -> None:
        with self._lock:
            self._keep_locked(key, kept)

    def _keep_locked(self, key: tuple[Hashable, ...], kept: tuple[int, Any, int]) -> None:
        old = self._parts.pop(key, None)
        if old is None or old[1] is not kept[1]:  # not a kept one moved to the recent end
            self._changes += 1
        self._weight += kept[2] - (old[2] if old is not None else 0)
        self._parts[key] = kept
        while self._weight > self.most and len(self._parts) > 1:
            dropped, (_, _, weight) = self._parts.popitem(last=False)
            self._weight -= weight
            self._details.get(dropped[:3], {}).pop(str(dropped[3]), None)

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
        self._ready.wait()
        with self._lock:
            kept = self._parts.get(("answer", *key))
        if kept is None:
            kept = (0, compute(), 1)
        self._keep(("answer", *key), kept)
        return kept[1]

    def hold(self) -> None:
        """Until `release`, a request waits instead of computing: an earlier process's parts are coming in
        (`adopt`; a few seconds at 1M orders, against the seconds a part costs to compute)."""
        self._ready.clear()

    def release(self) -> None:
        self._ready.set()

    @contextlib.contextmanager
    def still(self) -> Iterator[Kept]:
        """Everything kept, unchanging until the block ends: every state's locks (a state that has `locks`:
        a request changes it under them, not under the cache's), then the cache's are held meanwhile
        (ws_gateway/kept_file.py forks its background save inside it). A state made since the block began
        is left out. Requests wait meanwhile: keep the block short."""
        with self._lock:
            states = dict(self._states)
        held: list[threading.Lock] = []
        try:
            for state, _ in states.values():
                for lock in getattr(state, "locks", lambda: ())():
                    lock.acquire()
                    held.append(lock)
            with self._lock:
                yield Kept(dict(self._parts), {k: dict(v) for k, v in self._details.items()},
                           {k: v for k, v in self._states.items() if k in states and v[0] is states[k][0]})
        finally:
            for lock in reversed(held):
                lock.release()

    @property
    def changes(self) -> int:
        """How many parts were kept or replaced so far (a background save is skipped when none were since)."""
        return self._changes

    def adopt(self, kept: Kept) -> int:
        """Takes what an earlier process kept (ws_gateway/kept_file.py), where nothing is kept yet under the
        same key: a part or state computed since (a request during the load) is the newer. A part whose day's
        stamp has moved since is recomputed when asked, as any part whose stamp moved. Returns the parts taken."""
        taken = 0
        with self._lock:
            for key, part in kept.parts.items():
                if key not in self._parts:
                    self._keep_locked(key, part)
                    taken += 1
            for of, days in kept.details.items():
                mine = self._details.setdefault(of, {})
                for day, with_part in days.items():
                    now = self._parts.get((*of, day))
                    if day not in mine and now is not None and now[1] is with_part[0]:  # still its part
                        mine[day] = with_part
            for name, state in kept.states.items():
                self._states.setdefault(name, state)
        return taken

    def state(self, key: Hashable, make: Callable[[], T], weigh: Callable[[T], int]) -> T:
        """The state kept under `key`, made the first time. The least recently used others are dropped
        while all weigh more than `state_entries` (weighed now: they grow after they are made)."""
        self._ready.wait()
        with self._lock:
            kept = self._states.pop(key, None)
            out: T = make() if kept is None else kept[0]
            self._states[key] = (out, weigh)
            total = sum(w(s) for s, w in self._states.values())
            while total > self.state_entries and len(self._states) > 1:
                s, w = self._states.popitem(last=False)[1]
                total -= w(s)
            return out
