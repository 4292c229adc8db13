"""Bytewax's recovery partitions under <data-dir>/recovery, made so that a kill cannot leave them half made.

Bytewax's own `init_db_dir` creates each part file in place and then creates its tables: a kill -9
in between (the first start of a machine that is switched off, a test that kills early) leaves a file
with no `parts` row, and every later start fails with "No recovery partitions found on any worker;
can't resume" — the dataflow would never run again. Here partitions are made in a scratch directory
and each is renamed into place in one step, so a part file is either absent or complete; a broken one
left by an older storepulse is made again (a part file without its row was never used: no epoch was
committed to it).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from bytewax.recovery import init_db_dir

from flows.snapshot_files import fsync_dir

SCRATCH_PREFIX = ".init-"
LOCK_NAME = ".init.lock"


def ensure_recovery_dir(path: Path, partitions: int) -> None:
    """Makes every missing or unusable part file of `path`; leaves complete ones alone. The processes
    of a cluster on one data directory take turns (a lock file), so one never sees another's scratch."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the kernel on a kill
        _make_missing_parts(path, partitions)


def _make_missing_parts(path: Path, partitions: int) -> None:
    for stale in path.glob(SCRATCH_PREFIX + "*"):  # a start killed while making partitions
        shutil.rmtree(stale, ignore_errors=True)
    missing = [f"part-{i}.sqlite3" for i in range(partitions) if not part_is_complete(path / f"part-{i}.sqlite3")]
    if not missing:
        return
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=path))
    try:
        init_db_dir(scratch, partitions)
        for name in missing:
            _fsync_file(scratch / name)
            for suffix in ("-wal", "-shm", "-journal"):  # left by the broken file, not ours to replay
                (path / (name + suffix)).unlink(missing_ok=True)
            os.replace(scratch / name, path / name)
        fsync_dir(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def part_is_complete(file: Path) -> bool:
    """True if `file` is a part file Bytewax can resume from. Errors other than "this is not one"
    (a locked or unreadable file) are raised: such a file may hold snapshots and is never replaced."""
    if not file.exists():
        return False
    try:
        with closing(sqlite3.connect(file)) as db:
            row = db.execute("SELECT count(*) FROM parts").fetchone()
    except sqlite3.DatabaseError as e:
        message = str(e)
        if message.startswith("no such table") or "not a database" in message:
            return False
        raise
    return bool(row[0])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())

