"""Runs the dataflow: `storepulse flows`. Recovery snapshots live under <data-dir>/recovery."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from prometheus_client import start_http_server

from core.config import Config
from core.rates import Rates
from flows import gc_watch
from flows.dataflow import build_flow
from flows.outbox_sink import ActionOutbox
from flows.recovery import ensure_recovery_dir
from flows.revenue import DEFAULT_HORIZON_MS
from flows.write_behind import ModelAt
from state.log import DEFAULT_PARTITIONS
from state.open import open_log_reader, open_read_model
from storepulse.gc_policy import DATAFLOW, settle

RECOVERY_PARTITIONS = 1
# The ledger's tables snapshot what changed (flows/snapshot_files.py); the shoppers' books, customer profiles
# included, are still pickled whole each epoch that touches the organisation (0.36-0.5 s at 1M
# customers, bench/RESULTS.md). The epoch sets that cost, how much is replayed after a crash, and how
# often each active organisation fsyncs a segment file.
DEFAULT_EPOCH = timedelta(seconds=2)
log = logging.getLogger("storepulse.flows")


class GracefulStop:
    """How `storepulse flows` takes SIGINT and SIGTERM. The first ends the input: the dataflow closes
    its epoch, snapshots it and returns, with nothing to replay at the next start (Bytewax's own
    handling of Ctrl-C unwinds its worker with a Rust panic, printed with a backtrace). A signal
    within ECHO_SECONDS of the first is the same stop arriving twice (a terminal's Ctrl-C reaches the
    whole process group, and `storepulse up` passes its own on); a later one ends the process at once,
    and so does GRACE_SECONDS without the dataflow ending. Like any kill, that loses nothing: the next
    start resumes from the last snapshot.

    Signals are read on a thread of their own (signal.set_wakeup_fd), not by a Python handler: Bytewax
    runs those only between steps, so a process stuck in native code (a cluster process waiting for a
    peer that never comes) would ignore SIGTERM for ever."""

    GRACE_SECONDS = 10.0
    ECHO_SECONDS = 2.0
    NOT_STOPPED, INTERRUPTED = 3, 130  # exit codes

    def __init__(self, exit: Callable[[int], object] = os._exit) -> None:
        self._first: float | None = None
        self._exit = exit
        self._ended = threading.Event()  # the dataflow returned: the watchdog stands down
        self._wakeup: tuple[socket.socket, socket.socket] | None = None  # held open while signals may come

    def requested(self) -> bool:
        return self._first is not None

    def install(self) -> None:
        """From the main thread, before the dataflow starts."""
        read, write = self._wakeup = socket.socketpair()
        write.setblocking(False)
        # The wakeup fd first: a signal between the two would otherwise meet the no-op handler and be lost.
        signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: None)  # the thread below acts; no default action
        threading.Thread(target=self._listen, args=(read,), name="storepulse-signals", daemon=True).start()

    def ended(self) -> None:
        """The dataflow has returned: nothing is left for the watchdog to end."""
        self._ended.set()

    def _listen(self, read: socket.socket) -> None:
        while True:
            for signum in read.recv(64):
                if signum in (signal.SIGINT, signal.SIGTERM):
                    self.received(time.monotonic())

    def received(self, now: float) -> None:
        if self._first is None:
            self._first = now
            threading.Thread(target=self._watchdog, name="storepulse-stop-watchdog", daemon=True).start()
        elif now - self._first >= self.ECHO_SECONDS:
            self._leave(self.INTERRUPTED, "a second signal")

    def _watchdog(self) -> None:
        if self._ended.wait(self.GRACE_SECONDS):
            return
        self._leave(self.NOT_STOPPED, f"not stopped {self.GRACE_SECONDS:.0f} s after the signal")

    def _leave(self, code: int, why: str) -> None:
        print(f"storepulse flows: {why}; exiting (the next start resumes from the last snapshot)",
              file=sys.stderr, flush=True)
        self._exit(code)


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
    open_outbox: Callable[[], ActionOutbox] | None = None,
    rates: Rates | None = None,
    write_behind: bool = False,
) -> None:
    """Blocks until interrupted (SIGINT or SIGTERM: see GracefulStop). Each epoch commits input
    offsets and state together (exactly-once state). `open_outbox`: where automations' actions go
    (the notifier's outbox, notifier/open.py); None: they are decided but go nowhere. `write_behind`: with
    one worker, write the read model from a child process (flows/write_behind.py; off by default: on a
    machine without an idle core it was slower, bench/RESULTS.md)."""
    recovery = data_dir / "recovery"
    ensure_recovery_dir(recovery, RECOVERY_PARTITIONS)
    settle(DATAFLOW)
    gc_watch.watch()
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host)
    stop = GracefulStop()
    stop.install()
    flow = build_flow(
        config,
        lambda: open_log_reader(data_dir, redis_url),
        lambda: open_read_model(data_dir, redis_url),
        DEFAULT_PARTITIONS,
        until_caught_up,
        files_dir=recovery / "segments",
        horizon_ms=horizon_ms,
        stopping=stop.requested,
        open_outbox=open_outbox,
        rates=rates,
        # on request, with one worker in all: a process of its own writes the read model while the worker folds
        write_behind=ModelAt(data_dir, redis_url) if write_behind and workers == 1 and len(addresses or []) <= 1 else None,
    )
    log.info("dataflow running (%d worker(s), recovery in %s)", workers, recovery)
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=epoch_interval,
            recovery_config=RecoveryConfig(str(recovery)),
        )
    finally:
        stop.ended()
