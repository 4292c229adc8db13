"""Segment files: the large, slowly changing tables of an organisation's dataflow state, kept so
that a snapshot costs what changed since the last one, not what was ever held.

Bytewax snapshots a key's whole state at the end of every epoch that touched it. An organisation
holds every order of its refund horizon (flows/revenue.py), so pickling all of it each second cost
seconds per snapshot at a million orders. Instead the big tables (orders, buckets, refund totals)
live in memory as plain dicts, and each snapshot writes only the entries changed since the previous
one into a new immutable file (a segment); the Bytewax snapshot holds the small rest of the state
and the list of segment files. A restore reads the segments oldest first (a later copy of a key
replaces an earlier one) and keeps an entry only if `keep(table, key, value)` says it is still held,
so an entry dropped by eviction (a pure function of the entry and the watermark) stays dropped
without tombstones.

Files never change once written: a segment is named once, written, fsynced, and only then listed in
a snapshot, so a snapshot that Bytewax commits always lists complete files. Segments are merged so
that there are few of them: a segment's level says how big it is (level L holds up to LEVEL_ENTRIES
* FANOUT**L entries), and when the newest FANOUT segments share a level they become one segment of
the next level (entries the eviction rule drops are left out), so an entry is rewritten about
log_FANOUT(entries / entries per snapshot) times in its life, and a big segment (the first one,
or a compaction) is not rewritten by the merges of the small ones after it. A file that a merge replaced stays on
disk for RETIRE_SNAPSHOTS more snapshots and RETIRE_SECONDS, because Bytewax may resume from an epoch
or two before the latest snapshot; a restore deletes every file its snapshot does not list (files
of epochs that were never committed, and retired ones). Stale copies (a key written again later, an
entry evicted) are dropped by merges; should they still outnumber the live entries (plus
GARBAGE_SLACK), or the segments be more than MAX_SEGMENTS, the live tables are written out whole as
one segment instead, so the files hold at most about twice what is live and a restore reads at most
that.
"""

from __future__ import annotations

import io
import os
import pickle
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FANOUT = 8
LEVEL_ENTRIES = 4096
RETIRE_SNAPSHOTS = 8
RETIRE_SECONDS = 120.0
GARBAGE_SLACK = 10_000
MAX_SEGMENTS = 64  # small segments stranded behind big ones (busy epochs) are compacted too

Tables = dict[str, dict[Any, Any]]
Keep = Callable[[str, Any, Any], bool]


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    level: int
    entries: int
    size: int  # bytes


@dataclass(slots=True)
class SegmentState:
    """What a Bytewax snapshot holds of the store: the segments, oldest first."""

    segments: tuple[Segment, ...] = ()
    written: int = 0  # segments ever written by this organisation: names them in order


@dataclass
class SaveStats:
    entries_written: int = 0
    bytes_written: int = 0


@dataclass
class SegmentStore:
    """The segment files of one organisation under `root/<org>/`. Not thread safe: one owner."""

    root: Path
    org: str
    state: SegmentState = field(default_factory=SegmentState)
    last: SaveStats = field(default_factory=SaveStats)
    _retired: list[tuple[str, int, float]] = field(default_factory=list)  # (name, snapshot no, wall time)
    _saves: int = 0

    @property
    def dir(self) -> Path:
        return self.root / self.org

    def save(self, changed: Tables, keep: Keep, live: Callable[[], Tables]) -> SegmentState:
        """Writes `changed` (table -> {key: value}) as a new segment if it holds anything, merges
        segments as needed, and returns the state to put in the snapshot. `live()` gives the whole
        tables, for when stale copies have piled up."""
        self.last = SaveStats()
        self._saves += 1
        entries = sum(len(t) for t in changed.values())
        if entries:
            segments = list(self.state.segments)
            segments.append(self._write({k: v for k, v in changed.items() if v}, _level(entries), entries))
            while len(segments) >= FANOUT and len({s.level for s in segments[-FANOUT:]}) == 1:
                merged = segments[-FANOUT:]
                segments[-FANOUT:] = [self._merge(merged, keep)]
                self._retire(s.name for s in merged)
            stored = sum(s.entries for s in segments)
            if stored > GARBAGE_SLACK or len(segments) > MAX_SEGMENTS:
                tables = live()
                held = sum(len(t) for t in tables.values())
                if stored > 2 * held + GARBAGE_SLACK or len(segments) > MAX_SEGMENTS:
                    self._retire(s.name for s in segments)
                    segments = [self._write(tables, _level(held), held)]
            self.state = SegmentState(tuple(segments), self.state.written)
            fsync_dir(self.dir)
        self._delete_retired()
        return self.state

    def load(self, state: SegmentState, keep: Keep, prune: bool = True) -> Tables:
        """The tables a snapshot's segments hold (later copies win, dropped entries left out). Deletes
        every file of this organisation that the snapshot does not list, unless `prune` is false (a
        rollback to the latest snapshot within a run: retired files may still be needed by Bytewax)."""
        self.state = state
        tables: Tables = {}
        for seg in state.segments:
            for name, entries in self._read(seg.name).items():
                tables.setdefault(name, {}).update(entries)
        for name, entries in tables.items():
            tables[name] = {k: v for k, v in entries.items() if keep(name, k, v)}
        listed = {s.name for s in state.segments}
        if prune and self.dir.exists():
            for path in self.dir.iterdir():
                if path.name not in listed:
                    path.unlink(missing_ok=True)
        return tables

    def held(self) -> dict[str, int]:
        return {"segments": len(self.state.segments), "segment_entries": sum(s.entries for s in self.state.segments),
                "segment_bytes": sum(s.size for s in self.state.segments)}

    # --- internals -------------------------------------------------------------------------------

    def _write(self, tables: Mapping[str, Mapping[Any, Any]], level: int, entries: int) -> Segment:
        self.dir.mkdir(parents=True, exist_ok=True)
        written = self.state.written + 1
        self.state = SegmentState(self.state.segments, written)
        # The random part keeps a name from colliding with a file of an epoch that was never committed.
        name = f"{written:012d}-{level}-{secrets.token_hex(4)}.seg"
        data = _dumps(dict(tables))
        with open(self.dir / name, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.last.entries_written += entries
        self.last.bytes_written += len(data)
        return Segment(name, level, entries, len(data))

    def _read(self, name: str) -> Tables:
        path = self.dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RuntimeError(
                f"dataflow state of {self.org!r} lists segment {path} but it is missing: the recovery "
                "directory is incomplete. Stop storepulse, delete <data-dir>/recovery and the read model, "
                "and start again (the dataflow replays the log)") from None
        tables: Tables = pickle.loads(data)
        return tables

    def _merge(self, segments: list[Segment], keep: Keep) -> Segment:
        tables: Tables = {}
        for seg in segments:
            for name, entries in self._read(seg.name).items():
                tables.setdefault(name, {}).update(entries)
        for name in list(tables):
            tables[name] = {k: v for k, v in tables[name].items() if keep(name, k, v)}
        entries = sum(len(t) for t in tables.values())
        return self._write(tables, max(segments[0].level + 1, _level(entries)), entries)

    def _retire(self, names: Iterable[str]) -> None:
        now = time.monotonic()
        self._retired.extend((n, self._saves, now) for n in names)

    def _delete_retired(self) -> None:
        now = time.monotonic()
        kept = []
        for name, at, when in self._retired:
            if self._saves - at >= RETIRE_SNAPSHOTS and now - when >= RETIRE_SECONDS:
                (self.dir / name).unlink(missing_ok=True)
            else:
                kept.append((name, at, when))
        self._retired = kept


def _level(entries: int) -> int:
    level, most = 0, LEVEL_ENTRIES
    while entries > most:
        level, most = level + 1, most * FANOUT
    return level


def _dumps(tables: Tables) -> bytes:
    # Without the memo (the tables hold no object twice that matters, and no cycles) pickling is
    # twice as fast; repeated small strings (store, currency) cost a few bytes each instead.
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(tables)
    return out.getvalue()


def fsync_dir(path: Path) -> None:
    """Makes a directory's new and renamed entries durable (the files' own fsync does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
