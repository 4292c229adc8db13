"""Exactly-once state under crashes: kill -9 the dataflow ten times while a replay streams in, and the
final read model equals an uninterrupted run over the same log, value for value."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from storepulse import STOREPULSE
from tests.helpers import RETAIL_TOML, SHARED, Storepulse, wait_for

FILE = SHARED / "data" / "online_retail.csv.gz"
CONFIG = RETAIL_TOML


def dataflow_pids(parent: int) -> list[int]:
    """The `storepulse flows` children of a `storepulse up`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and b"flows" in cmdline:
            found.append(int(stat.parent.name))
    return found


def read_model(path: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(path) as conn:
        buckets = conn.execute("SELECT org, grain, start, store, currency, gross, refunds, orders, paid_orders, items "
                               "FROM buckets WHERE gross OR refunds OR orders OR paid_orders OR items ORDER BY 1, 2, 3, 4, 5").fetchall()
        records = conn.execute("SELECT org, kind, key, day, value FROM records UNION ALL "
                               "SELECT org, kind, key, day, value FROM unstamped_records ORDER BY 1, 2, 3").fetchall()
    return buckets, records


@pytest.mark.skipif(not FILE.exists(), reason=f"../shared is absent: no {FILE}")
def test_ten_kills_during_a_replay_change_nothing(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    sp = Storepulse(tmp_path / "live", config=CONFIG)
    rnd = random.Random(7)
    try:
        sp.start()
        replay = subprocess.Popen(
            [*STOREPULSE, "replay", "online-retail", str(FILE), "--org", "retail", "--speed", "500",
             "--config", str(sp.config), "--data-dir", str(sp.data_dir)],
            cwd=sp.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kills = 0
        while kills < 10:
            wait_for(lambda: bool(dataflow_pids(sp.proc.pid)), 30, "the dataflow process (re)started")
            time.sleep(rnd.uniform(0.8, 2.0))  # let it restore, process and snapshot a little, or not
            for pid in dataflow_pids(sp.proc.pid):
                os.kill(pid, signal.SIGKILL)
                kills += 1
        assert replay.poll() is None, "the replay should still be running after the kills; slow it down"
        assert replay.wait(120) == 0
        # Let the restarted dataflow catch up, then compare with one that was never interrupted.
        calm = tmp_path / "calm"
        calm.mkdir()
        with sqlite3.connect(sp.data_dir / "log.sqlite3") as src, sqlite3.connect(calm / "log.sqlite3") as dst:
            src.backup(dst)  # a consistent copy, WAL included
        done = subprocess.run([*STOREPULSE, "flows", "--until-caught-up", "--config", str(sp.config),
                               "--data-dir", str(calm)], cwd=sp.workdir, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        want = read_model(calm / "readmodel.sqlite3")
        assert sum(1 for r in want[1] if r[1] == "order") == 19_959  # every order of the file
        deadline = time.monotonic() + 120
        got = read_model(sp.data_dir / "readmodel.sqlite3")
        while got != want and time.monotonic() < deadline:
            time.sleep(0.5)
            got = read_model(sp.data_dir / "readmodel.sqlite3")
        assert got[0] == want[0]
        assert got[1] == want[1]
    finally:
        sp.ensure_stopped()
