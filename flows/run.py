"""Runs the dataflow: `storepulse flows`. Recovery snapshots live under <data-dir>/recovery."""

from __future__ import annotations

import logging
import signal
import time
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from prometheus_client import start_http_server

from core.config import Config
from core.gc_policy import DATAFLOW, settle
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from flows.revenue import DEFAULT_HORIZON_MS
from state.log import DEFAULT_PARTITIONS
from state.open import open_log_reader, open_read_model

RECOVERY_PARTITIONS = 1
# Snapshots cost what changed (flows/segments.py), so the epoch mostly sets how much is replayed
# after a crash and how often each active organisation fsyncs a segment file.
DEFAULT_EPOCH = timedelta(seconds=2)
log = logging.getLogger("storepulse.flows")


def tune_gc() -> None:
    """The dataflow's collector policy (core/gc_policy.py): it holds millions of long-lived objects."""
    settle(DATAFLOW)


class GracefulStop:
    """The signal handler of `storepulse flows`. The first SIGINT or SIGTERM ends the input: the
    dataflow closes its epoch, snapshots it and returns, with nothing to replay at the next start
    (Bytewax's own handling of Ctrl-C unwinds its worker with a Rust panic, printed with a backtrace).
    A second signal, or GRACE_SECONDS without the dataflow ending (a cluster whose other processes
    were not told), interrupts it the old way. A signal within ECHO_SECONDS of the first is the same
    stop arriving twice, not a second request: a terminal's Ctrl-C reaches the whole process group,
    and `storepulse up` also passes its own on to the dataflow."""

    GRACE_SECONDS = 10
    ECHO_SECONDS = 2.0

    def __init__(self) -> None:
        self._first: float | None = None

    def requested(self) -> bool:
        return self._first is not None

    def __call__(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
            signal.signal(signal.SIGALRM, self)
            signal.alarm(self.GRACE_SECONDS)
        elif signum == signal.SIGALRM or now - self._first >= self.ECHO_SECONDS:
            raise KeyboardInterrupt


def run_flows(
    config: Config,
    data_dir: Path,
    redis_url: str | None,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    epoch_interval: timedelta = DEFAULT_EPOCH,
    horizon_ms: int = DEFAULT_HORIZON_MS,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    until_caught_up: bool = False,
) -> None:
    """Blocks until interrupted (SIGINT or SIGTERM: see GracefulStop). Each epoch commits input
    offsets and state together (exactly-once state)."""
    recovery = data_dir / "recovery"
    ensure_recovery_dir(recovery, RECOVERY_PARTITIONS)
    tune_gc()
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host)
    stop = GracefulStop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    flow = build_flow(
        config,
        lambda: open_log_reader(data_dir, redis_url),
        lambda: open_read_model(data_dir, redis_url),
        DEFAULT_PARTITIONS,
        until_caught_up,
        segments=recovery / "segments",
        horizon_ms=horizon_ms,
        stopping=stop.requested,
    )
    log.info("dataflow running (%d worker(s), recovery in %s)", workers, recovery)
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=epoch_interval,
        recovery_config=RecoveryConfig(str(recovery)),
    )
