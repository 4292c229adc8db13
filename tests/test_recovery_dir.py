"""Bytewax recovery partitions survive a kill while they are being made (flows/recovery.py)."""

from __future__ import annotations

import concurrent.futures
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from flows.recovery import LOCK_NAME, SCRATCH_PREFIX, ensure_recovery_dir, part_is_complete


def _parts_rows(file: Path) -> list[tuple[int, int]]:
    with closing(sqlite3.connect(file)) as db:
        return db.execute("SELECT part_index, part_count FROM parts").fetchall()


def test_a_fresh_directory_gets_complete_partitions(tmp_path: Path) -> None:
    ensure_recovery_dir(tmp_path / "recovery", 2)
    names = sorted(p.name for p in (tmp_path / "recovery").iterdir())
    assert names == [LOCK_NAME, "part-0.sqlite3", "part-1.sqlite3"]
    assert _parts_rows(tmp_path / "recovery" / "part-1.sqlite3") == [(1, 2)]


@pytest.mark.parametrize("broken", ["empty file", "tables without their row", "not sqlite"])
def test_a_part_file_left_half_made_by_a_kill_is_made_again(tmp_path: Path, broken: str) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    part = recovery / "part-0.sqlite3"
    if broken == "empty file":
        part.write_bytes(b"")
    elif broken == "tables without their row":
        init_db_dir(recovery, 1)
        with closing(sqlite3.connect(part)) as db:
            db.execute("DELETE FROM parts")
            db.commit()
    else:
        part.write_bytes(b"\x00garbage" * 100)
    (recovery / f"{SCRATCH_PREFIX}abc").mkdir()  # a scratch directory of a start killed mid-way
    assert not part_is_complete(part)
    ensure_recovery_dir(recovery, 1)
    assert part_is_complete(part)
    assert _parts_rows(part) == [(0, 1)]
    assert sorted(p.name for p in recovery.iterdir()) == [LOCK_NAME, "part-0.sqlite3"]


def test_a_complete_part_file_and_its_snapshots_are_left_alone(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    ensure_recovery_dir(recovery, 1)
    part = recovery / "part-0.sqlite3"
    with closing(sqlite3.connect(part)) as db:
        db.execute("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES ('s', 'acme', 7, x'01')")
        db.commit()
    before = part.stat().st_ino
    ensure_recovery_dir(recovery, 1)
    assert part.stat().st_ino == before
    with closing(sqlite3.connect(part)) as db:
        assert db.execute("SELECT state_key, snap_epoch FROM snaps").fetchall() == [("acme", 7)]


def test_processes_of_a_cluster_starting_together_make_the_partitions_once(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        list(pool.map(ensure_recovery_dir, [recovery] * 8, [2] * 8))
    assert sorted(p.name for p in recovery.iterdir()) == [LOCK_NAME, "part-0.sqlite3", "part-1.sqlite3"]
    assert _parts_rows(recovery / "part-0.sqlite3") == [(0, 2)]
