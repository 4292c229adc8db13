"""The snapshot work done after batches, through the real Bytewax dataflow (flows/dataflow.py, a SQLite
log and read model, Bytewax recovery): read 200 events at a time in 5 ms epochs, a fold of 12,000
repeat orders snapshots the organisation tens of times, packing segment states ahead and merging snapshot files a step at a
time; a restart from that recovery state, fed the rest of the log, ends with the read model of one
run that was never stopped, value for value."""

from __future__ import annotations

import asyncio
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from core.config import parse_config
from core.events import Event, Item, Kind
from flows import sources
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from flows.snapshot_files import _PARTS
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_readmodel import SqliteReadModel
from tests.test_exactly_once import read_model

CONFIG = parse_config('[orgs.acme]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.acme.stores.site]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_796_600_000_000  # the wall clock of these runs; events at 2,000/s before it
CUSTOMERS, EVENTS = 1_000, 12_000


def events(start: int, end: int) -> list[Event]:
    return [Event(id=f"e{n}", kind=Kind.ORDER_PAID, org="acme", store="site", time=T0 - 60_000 + n // 2,
                  amount=15_000 if n % 10 == 0 else 2_000, currency="EUR", order=f"o{n}", customer=f"c{n % CUSTOMERS}",
                  items=(Item("mug", 1, 2_000),)) for n in range(start, end)]


def append(root: Path, batch: list[Event]) -> None:
    log = SqliteEventLog(root / "log.sqlite3", 1)
    log.append_sync(batch)
    asyncio.run(log.close())


def fold(root: Path) -> None:
    ensure_recovery_dir(root / "recovery", 1)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(root / "log.sqlite3", 1),
                      lambda: SqliteReadModel(root / "readmodel.sqlite3"), 1, until_caught_up=True,
                      files_dir=root / "recovery" / "segments", clock=lambda: T0)
    run_main(flow, epoch_interval=timedelta(milliseconds=5), recovery_config=RecoveryConfig(str(root / "recovery")))


def test_a_restart_from_snapshots_packed_ahead_and_merged_in_steps_ends_as_a_run_never_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "BATCH", 200)  # small batches: many epochs, each snapshotted
    stopped, calm = tmp_path / "stopped", tmp_path / "calm"
    for root in (stopped, calm):
        root.mkdir()
    append(stopped, events(0, EVENTS // 2))
    fold(stopped)
    files = sorted((stopped / "recovery" / "segments" / "acme").iterdir())
    merged = [f for f in files if not f.name.split("-")[1] == "0"]
    assert merged, f"no merged snapshot file among {len(files)}: the test folds too little to merge"
    assert any(pickle.loads(f.read_bytes()) == _PARTS for f in merged), "no file merged in steps"
    append(stopped, events(EVENTS // 2, EVENTS))
    fold(stopped)  # restored from the files above, then the rest of the log
    append(calm, events(0, EVENTS))
    fold(calm)
    want = read_model(calm / "readmodel.sqlite3")
    assert sum(1 for r in want[1] if r[1] == "order") == EVENTS
    assert sum(1 for r in want[1] if r[1] == "segment_change") > EVENTS  # segment states were snapshotted
    assert read_model(stopped / "readmodel.sqlite3") == want
