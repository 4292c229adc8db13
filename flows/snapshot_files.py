"""Snapshot files: the large, slowly changing tables of an organisation's dataflow state, kept so
that a snapshot costs what changed since the last one, not what was ever held.

Bytewax snapshots a key's whole state at the end of every epoch that touched it. An organisation
holds every order of its refund horizon (flows/revenue.py), so pickling all of it each second cost
seconds per snapshot at a million orders. Instead the big tables (orders, buckets, refund totals)
live in memory as plain dicts, and each snapshot writes only the entries changed since the previous
one into a new immutable file; the Bytewax snapshot holds the small rest of the state and the list
of files (flows/snapshots.py). A restore reads the files oldest first (a later copy of a key
replaces an earlier one) and keeps an entry only if `keep(table, key, value)` says it is still held,
so an entry dropped by eviction (a pure function of the entry and the watermark) stays dropped
without tombstones.

Files never change once written: a file is named once, written, fsynced, and only then listed in a
snapshot, so a snapshot that Bytewax commits always lists complete files. Files are merged so that
there are few of them: a file's level says how big it is (level L holds up to LEVEL_ENTRIES *
FANOUT**L entries), and when the newest FANOUT files share a level they become one file of the next
level (entries the eviction rule drops are left out), so an entry is rewritten about
log_FANOUT(entries / entries per snapshot) times in its life, and a big file (the first one, or a
compaction) is not rewritten by the merges of the small ones after it. A file that a merge replaced
stays on disk for RETIRE_SNAPSHOTS more snapshots and RETIRE_SECONDS, because Bytewax may resume
from an epoch or two before the latest snapshot; a restore deletes every file its snapshot does not
list (files of epochs that were never committed, and retired ones). Stale copies (a key written
again later, an entry evicted) are dropped by merges; should they still outnumber the live entries
(plus GARBAGE_SLACK), or the files be more than MAX_FILES, the live tables are written out whole as
one file instead, so the files hold at most about twice what is live and a restore reads at most
that. (On disk they live under recovery/files/<org>/, their name before this module's.)
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
MAX_FILES = 64  # small files stranded behind big ones (busy epochs) are compacted too

Tables = dict[str, dict[Any, Any]]
Keep = Callable[[str, Any, Any], bool]


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    name: str
    level: int
    entries: int
    size: int  # bytes


@dataclass(slots=True)
class FileList:
    """What a Bytewax snapshot holds of an organisation's files: the files, oldest first."""

    files: tuple[SnapshotFile, ...] = ()
    written: int = 0  # files ever written by this organisation: names them in order


@dataclass
class SaveStats:
    entries_written: int = 0
    bytes_written: int = 0


@dataclass
class SnapshotFiles:
    """The snapshot files of one organisation under `root/<org>/`. Not thread safe: one owner."""

    root: Path
    org: str
    state: FileList = field(default_factory=FileList)
    last: SaveStats = field(default_factory=SaveStats)
    _retired: list[tuple[str, int, float]] = field(default_factory=list)  # (name, snapshot no, wall time)
    _saves: int = 0

    @property
    def dir(self) -> Path:
        return self.root / self.org

    def save(self, changed: Tables, keep: Keep, live: Callable[[], Tables],
             held: Callable[[], int] | None = None) -> FileList:
        """Writes `changed` (table -> {key: value}) as a new file if it holds anything, merges
        files as needed, and returns the state to put in the snapshot. `live()` gives the whole
        tables, for when stale copies have piled up; `held()` how many entries they hold (without it,
        the length of `live()`: give it when the tables are built on demand)."""
        self.last = SaveStats()
        self._saves += 1
        entries = sum(len(t) for t in changed.values())
        if entries:
            files = list(self.state.files)
            files.append(self._write({k: v for k, v in changed.items() if v}, _level(entries), entries))
            while len(files) >= FANOUT and len({s.level for s in files[-FANOUT:]}) == 1:
                merged = files[-FANOUT:]
                files[-FANOUT:] = [self._merge(merged, keep)]
                self._retire(s.name for s in merged)
            stored = sum(s.entries for s in files)
            if stored > GARBAGE_SLACK or len(files) > MAX_FILES:
                count = held() if held is not None else sum(len(t) for t in live().values())
                if stored > 2 * count + GARBAGE_SLACK or len(files) > MAX_FILES:
                    tables = live()
                    count = sum(len(t) for t in tables.values())
                    self._retire(s.name for s in files)
                    files = [self._write(tables, _level(count), count)]
            self.state = FileList(tuple(files), self.state.written)
            fsync_dir(self.dir)
        self._delete_retired()
        return self.state

    def load(self, state: FileList, keep: Keep, prune: bool = True) -> Tables:
        """The tables a snapshot's files hold (later copies win, dropped entries left out). Deletes
        every file of this organisation that the snapshot does not list, unless `prune` is false (a
        rollback to the latest snapshot within a run: retired files may still be needed by Bytewax)."""
        self.state = state
        tables: Tables = {}
        for f in state.files:
            for name, entries in self._read(f.name).items():
                tables.setdefault(name, {}).update(entries)
        for name, entries in tables.items():
            tables[name] = {k: v for k, v in entries.items() if keep(name, k, v)}
        listed = {s.name for s in state.files}
        if prune and self.dir.exists():
            for path in self.dir.iterdir():
                if path.name not in listed:
                    path.unlink(missing_ok=True)
        return tables

    def held(self) -> dict[str, int]:
        return {"files": len(self.state.files), "file_entries": sum(s.entries for s in self.state.files),
                "file_bytes": sum(s.size for s in self.state.files)}

    # --- internals -------------------------------------------------------------------------------

    def _write(self, tables: Mapping[str, Mapping[Any, Any]], level: int, entries: int) -> SnapshotFile:
        self.dir.mkdir(parents=True, exist_ok=True)
        written = self.state.written + 1
        self.state = FileList(self.state.files, written)
        # The random part keeps a name from colliding with a file of an epoch that was never committed.
        name = f"{written:012d}-{level}-{secrets.token_hex(4)}.seg"
        data = _dumps(dict(tables))
        with open(self.dir / name, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.last.entries_written += entries
        self.last.bytes_written += len(data)
        return SnapshotFile(name, level, entries, len(data))

    def _read(self, name: str) -> Tables:
        path = self.dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RuntimeError(
                f"dataflow state of {self.org!r} lists the snapshot file {path} but it is missing: the recovery "
                "directory is incomplete. Stop storepulse, delete <data-dir>/recovery and the read model, "
                "and start again (the dataflow replays the log)") from None
        tables: Tables = pickle.loads(data)
        return tables

    def _merge(self, files: list[SnapshotFile], keep: Keep) -> SnapshotFile:
        tables: Tables = {}
        for f in files:
            for name, rows in self._read(f.name).items():
                tables.setdefault(name, {}).update(rows)
        for name in list(tables):
            tables[name] = {k: v for k, v in tables[name].items() if keep(name, k, v)}
        entries = sum(len(t) for t in tables.values())
        return self._write(tables, max(files[0].level + 1, _level(entries)), entries)

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


def _dumps(tables: Mapping[str, Mapping[Any, Any]]) -> bytes:
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
