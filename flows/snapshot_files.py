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
import itertools
import os
import pickle
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

FANOUT = 8
LEVEL_ENTRIES = 4096
RETIRE_SNAPSHOTS = 8
RETIRE_SECONDS = 120.0
GARBAGE_SLACK = 10_000
MERGE_CHUNK = 20_000  # entries a merge step writes
# The first pickle of a file written in parts (a stepwise merge); a storepulse from before parts reads
# it as its tables and fails on it, rather than silently reading the first part only.
_PARTS = ("storepulse-snapshot-file-parts", 1)
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
    stepwise: bool = False  # merges done by merge_step, a step at a time, instead of inside save
    _merging: _Merge | None = None
    _between: SaveStats = field(default_factory=SaveStats)  # written by merge steps since the last save

    @property
    def dir(self) -> Path:
        return self.root / self.org

    def save(self, changed: Tables, keep: Keep, live: Callable[[], Tables],
             held: Callable[[], int] | None = None) -> FileList:
        """Writes `changed` (table -> {key: value}) as a new file if it holds anything, merges
        files as needed, and returns the state to put in the snapshot. `live()` gives the whole
        tables, for when stale copies have piled up; `held()` how many entries they hold (without it,
        the length of `live()`: give it when the tables are built on demand). With `stepwise` merges,
        a merge is only begun here (`merge_step` does it) and its file listed once written."""
        self.last, self._between = self._between, SaveStats()  # what merge steps wrote since the last save
        self._saves += 1
        entries = sum(len(t) for t in changed.values())
        done = self._merging is not None and self._merging.done is not None
        if entries or done:
            files = list(self.state.files)
            if entries:
                files.append(self._write({k: v for k, v in changed.items() if v}, _level(entries), entries))
            if done:
                files = self._spliced(files)
            if self.stepwise:
                if self._merging is None and (run := _mergeable(files)) is not None:
                    self._merging = _Merge(files[run:run + FANOUT])
            else:
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
                    self._drop_merge()
                    files = [self._write(tables, _level(count), count)]
            self.state = FileList(tuple(files), self.state.written)
            fsync_dir(self.dir)
        self._delete_retired()
        return self.state

    def merge_step(self, keep: Keep) -> bool:
        """One step of the merge `save` began (with `stepwise`): reads one part of its files (a file a
        snapshot wrote whole, or up to MERGE_CHUNK entries of one a merge wrote), or writes up to
        MERGE_CHUNK of its entries (those `keep` keeps) to the merged file, or, all written, fsyncs it
        (the next `save` lists it in their place). The dataflow takes a step after each batch, so a
        merge (~0.5 s of work every 8 snapshots at 2,000 orders/s) never stalls one epoch's end whole:
        up to ~65 ms a step there (bench/snapshot_cost.py). False when there is nothing to do."""
        m = self._merging
        if m is None or m.done is not None:
            return False
        if m.read < len(m.files):  # a part of a file a step (a file written whole is one part)
            if m.reading is None:
                m.reading = self._parts(m.files[m.read].name)
            part = next(m.reading, None)
            if part is None:
                m.reading = None
                m.read += 1
                return self.merge_step(keep)
            for name, rows in part.items():
                m.tables.setdefault(name, {}).update(rows)
            return True
        if m.out is None:
            level = max(m.files[0].level + 1, _level(sum(len(t) for t in m.tables.values())))
            m.name, m.level = self._name(level), level
            m.out = open(self.dir / m.name, "xb")  # written over several steps, closed by the last
            m.size += m.out.write(_dumps(_PARTS))
            m.chunks = _chunks(m.tables)
        chunk = next(m.chunks, None)
        if chunk is not None:
            name, items = chunk
            kept = {k: v for k, v in items if keep(name, k, v)}
            if kept:
                m.entries += len(kept)
                m.size += m.out.write(_dumps({name: kept}))
            return True
        m.out.flush()
        os.fsync(m.out.fileno())
        m.out.close()
        fsync_dir(self.dir)
        self._between.entries_written += m.entries
        self._between.bytes_written += m.size
        m.done, m.tables = SnapshotFile(m.name, m.level, m.entries, m.size), {}
        return True

    def _spliced(self, files: list[SnapshotFile]) -> list[SnapshotFile]:
        """The files with the finished merge's file in place of the files it merged (still there, in a
        row: only saves append files, and only this merge replaces any)."""
        m = self._merging
        assert m is not None and m.done is not None
        i = files.index(m.files[0])
        assert files[i:i + len(m.files)] == m.files, "the files a merge took are no longer in a row"
        self._retire(s.name for s in m.files)
        self._merging = None
        return files[:i] + [m.done] + files[i + len(m.files):]

    def _drop_merge(self) -> None:
        """Forgets the merge under way (its files are being replaced); its file, if begun, is listed nowhere."""
        m = self._merging
        if m is not None and m.out is not None:
            m.out.close()
            (self.dir / m.name).unlink(missing_ok=True)
        self._merging = None

    def load(self, state: FileList, keep: Keep, prune: bool = True) -> Tables:
        """The tables a snapshot's files hold (later copies win, dropped entries left out). Deletes
        every file of this organisation that the snapshot does not list, unless `prune` is false (a
        rollback to the latest snapshot within a run: retired files may still be needed by Bytewax)."""
        self.state = state
        self._drop_merge()  # begun from a state this one replaces
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

    def _name(self, level: int) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        written = self.state.written + 1
        self.state = FileList(self.state.files, written)
        # The random part keeps a name from colliding with a file of an epoch that was never committed.
        return f"{written:012d}-{level}-{secrets.token_hex(4)}.seg"

    def _write(self, tables: Mapping[str, Mapping[Any, Any]], level: int, entries: int) -> SnapshotFile:
        name = self._name(level)
        data = _dumps(dict(tables))
        with open(self.dir / name, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.last.entries_written += entries
        self.last.bytes_written += len(data)
        return SnapshotFile(name, level, entries, len(data))

    def _read(self, name: str) -> Tables:
        tables: Tables = {}
        for part in self._parts(name):
            for table, rows in part.items():
                tables.setdefault(table, {}).update(rows)
        return tables

    def _parts(self, name: str) -> Iterator[Tables]:
        """A file's tables as written: one dict of them, or (written in parts by a stepwise merge) each part."""
        path = self.dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RuntimeError(
                f"dataflow state of {self.org!r} lists the snapshot file {path} but it is missing: the recovery "
                "directory is incomplete. Stop storepulse, delete <data-dir>/recovery and the read model, "
                "and start again (the dataflow replays the log)") from None
        read = pickle.Unpickler(io.BytesIO(data))
        first: Any = read.load()
        if first != _PARTS:
            yield first
            return
        while True:
            try:
                part: Tables = read.load()
            except EOFError:
                return
            yield part

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


@dataclass
class _Merge:
    """A merge under way (SnapshotFiles.merge_step): its files, oldest first, what is read of them, and
    the merged file as far as it is written."""

    files: list[SnapshotFile]
    tables: Tables = field(default_factory=dict)
    read: int = 0  # files read whole
    reading: Iterator[Tables] | None = None  # the parts of files[read], as far as read
    out: BinaryIO | None = None
    name: str = ""
    level: int = 0
    chunks: Iterator[tuple[str, list[tuple[Any, Any]]]] = field(default_factory=lambda: iter(()))
    entries: int = 0
    size: int = 0
    done: SnapshotFile | None = None


def _chunks(tables: Tables) -> Iterator[tuple[str, list[tuple[Any, Any]]]]:
    """Each table's entries, MERGE_CHUNK at a time."""
    for name, rows in tables.items():
        items = iter(rows.items())
        while chunk := list(itertools.islice(items, MERGE_CHUNK)):
            yield name, chunk


def _mergeable(files: list[SnapshotFile]) -> int | None:
    """Where the newest run of FANOUT files of one level begins (they become one file of the next)."""
    for i in range(len(files) - FANOUT, -1, -1):
        if len({s.level for s in files[i:i + FANOUT]}) == 1:
            return i
    return None


def _level(entries: int) -> int:
    level, most = 0, LEVEL_ENTRIES
    while entries > most:
        level, most = level + 1, most * FANOUT
    return level


def _dumps(tables: Mapping[str, Mapping[Any, Any]] | tuple[str, int]) -> bytes:
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
