"""`storepulse flows -w 2` and a two-process Bytewax cluster give the same read model as one worker,
over the same log (online-retail for one organisation, REES46 for another, so both workers work).
Online Retail's first 150,000 lines (December 2010 to 8 April 2011) keep it under a
minute: agreement does not need the whole year (tests/test_exactly_once.py replays all of it)."""

from __future__ import annotations

import gzip
import itertools
import sqlite3
import subprocess
from pathlib import Path

import pytest

from storepulse import STOREPULSE
from tests.helpers import RETAIL_TOML, SHARED, free_port
from tests.test_exactly_once import read_model

RETAIL = SHARED / "data" / "online_retail.csv.gz"
REES = SHARED / "data" / "rees46_2019oct_head.csv.gz"
LINES = 150_000
CONFIG = RETAIL_TOML + """
[orgs.rees]
timezone = "UTC"
currency = "USD"
token = "rees-token-0123456789"
[orgs.rees.stores.rees-site]
provider = "events"
secret = "rees-key-0123456789"
"""


def storepulse(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*STOREPULSE, *args, "--config", str(cwd / "storepulse.toml")],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.skipif(not (RETAIL.exists() and REES.exists()), reason="../shared is absent: no data sets to replay")
def test_one_worker_two_workers_and_a_cluster_agree(tmp_path: Path) -> None:
    (tmp_path / "storepulse.toml").write_text(CONFIG)
    log = tmp_path / "log"
    retail = tmp_path / "online_retail_head.csv.gz"
    with gzip.open(RETAIL, "rb") as src, gzip.open(retail, "wb") as dst:
        dst.writelines(itertools.islice(src, LINES + 1))  # the header, then LINES rows
    for dataset, file, org in (("online-retail", retail, "retail"), ("rees46", REES, "rees")):
        p = storepulse("replay", dataset, str(file), "--org", org, "--data-dir", str(log), cwd=tmp_path)
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out

    def run(name: str, *extra: str, processes: int = 1) -> tuple[list[tuple], list[tuple]]:
        d = tmp_path / name
        d.mkdir()
        with sqlite3.connect(log / "log.sqlite3") as src, sqlite3.connect(d / "log.sqlite3") as dst:
            src.backup(dst)
        if processes == 1:
            procs = [storepulse("flows", "--until-caught-up", "--data-dir", str(d), *extra, cwd=tmp_path)]
        else:
            addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
            procs = [storepulse("flows", "--until-caught-up", "--data-dir", str(d), "-i", str(i), "-a", addresses, cwd=tmp_path)
                     for i in range(processes)]
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out[-3000:]
        return read_model(d / "readmodel.sqlite3")

    one = run("one")
    assert sum(1 for r in one[1] if r[1] == "order") > 5_000  # retail's orders and rees46's sessions
    assert run("two-workers", "-w", "2") == one
    assert run("cluster", processes=2) == one
