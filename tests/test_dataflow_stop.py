"""How `storepulse flows` takes signals (flows/run.py GracefulStop): the first asks for a clean stop,
the same stop arriving twice (the terminal's Ctrl-C to the group, and `up` passing its own on) is not
a second request, a later second signal ends the process, and so does the watchdog when the
dataflow does not stop in time (a process stuck in native code no longer ignores SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from flows.run import GracefulStop
from storepulse import STOREPULSE
from tests.helpers import ORGS_TOML, RATES_CSV, SECRETS, RedisServer, free_port, wait_for


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_first_signal_asks_for_a_clean_stop() -> None:
    exits = Exits()
    stop = GracefulStop(exit=exits)
    assert not stop.requested()
    stop.received(100.0)
    assert stop.requested() and exits.codes == []


def test_the_same_stop_arriving_twice_is_not_a_second_request() -> None:
    exits = Exits()
    stop = GracefulStop(exit=exits)
    stop.received(100.0)
    stop.received(100.3)  # up's supervisor passing the terminal's Ctrl-C on
    assert stop.requested() and exits.codes == []


def test_a_later_second_signal_ends_the_process() -> None:
    exits = Exits()
    stop = GracefulStop(exit=exits)
    stop.received(100.0)
    stop.received(100.0 + GracefulStop.ECHO_SECONDS)
    assert exits.codes == [GracefulStop.INTERRUPTED]


def test_the_watchdog_ends_a_process_that_did_not_stop_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GracefulStop, "GRACE_SECONDS", 0.05)
    exits = Exits()
    GracefulStop(exit=exits).received(100.0)
    assert exits.called.wait(5)
    assert exits.codes == [GracefulStop.NOT_STOPPED]


def test_the_watchdog_stands_down_once_the_dataflow_has_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GracefulStop, "GRACE_SECONDS", 0.2)
    exits = Exits()
    stop = GracefulStop(exit=exits)
    stop.received(100.0)
    stop.ended()
    assert not exits.called.wait(0.6)


def test_sigterm_ends_a_cluster_process_whose_peer_never_came(tmp_path: Path) -> None:
    """Bytewax waits for its peers in native code, where no Python signal handler runs: without the
    watchdog, SIGTERM (docker compose stop) would leave it running."""
    redis = RedisServer(tmp_path / "redis")
    (tmp_path / "storepulse.toml").write_text(ORGS_TOML)
    (tmp_path / "rates.csv").write_text(RATES_CSV)
    log = tmp_path / "flows-0.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*STOREPULSE, "flows", "--config", "storepulse.toml", "--redis", redis.url, "--data-dir",
                                 "data", "-i", "0", "-a", f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"],
                                cwd=tmp_path, env={**os.environ, "ACME_EU2_SECRET": SECRETS["acme-eu2"]},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "dataflow running" in log.read_text(), 30, "the cluster process to start")
        time.sleep(0.5)  # inside Bytewax, waiting for process 1
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GracefulStop.GRACE_SECONDS + 20)
        assert code == GracefulStop.NOT_STOPPED, log.read_text()
        assert time.monotonic() - sent >= GracefulStop.GRACE_SECONDS - 0.5
        assert "not stopped 10 s after the signal" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis.stop()
