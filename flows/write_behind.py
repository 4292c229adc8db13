"""The read-model sink of a single-worker dataflow: a writer process writes while the worker folds.

Writing the read model was a third or more of the dataflow worker's busy time at 2,000 events/s
(bench/automation_latency.py: 8.6 changes per event, ~25 us of SQLite per change), spent on the same
thread as the fold, so the two never overlapped. A thread of the same process does not help: SQLite
releases the GIL for every statement and then waits to take it back from the folding thread (measured:
the write 5x slower beside a busy thread). A process of its own uses the machine's other core. The worker
encodes each batch's changes as the change feed's JSON (about 1 us per change) and sends them down a
pipe; the writer decodes them and writes them with the read model's own `write`. Whatever queued while
the writer was busy goes out in its next write, in order, as one transaction: each batch still shows
whole (flows/sinks.py), and a backlog is written in fewer, bigger transactions.

The automations' actions of a batch are put into the outbox once the writer has acknowledged the batch
(by a thread of the dataflow process that reads the acknowledgements): never before its changes are in
the read model, as when the two sinks wrote in turn. A digest fills its figures from the read model as
it is put (notifier/digests.py).

Nothing is lost to a crash: this is a Bytewax *stateful* sink, whose `snapshot()` Bytewax calls at the
end of every epoch before it commits that epoch's input offsets and state; `snapshot()` waits until the
writer has acknowledged every batch sent so far (and raises if a write failed or the writer died). So a
committed epoch's changes are always in the read model, as with a synchronous write, and a crash replays
at most the uncommitted epoch, whose changes the read model's versions make idempotent. A writer whose
dataflow died reads the end of its pipe and exits. The snapshot also waits for the actions of those
batches to be put.

Every item goes to one sink partition: only for a dataflow of one worker, where that costs no exchange
between workers. Off by default (`storepulse up|flows --write-behind`): on a 2-core machine busy with
other work the writer found no idle core and the dataflow was slower with it (bench/dataflow_capacity.py).

    python -m flows.write_behind <data fd> <ack fd> <data dir> [<redis url>]   (started by the sink)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from core.changes import changes_from_json
from flows import metrics
from flows.outbox_sink import ActionOutbox
from flows.sinks import Item
from flows.sources import wall_clock_ms
from notifier.actions import Action
from state.readmodel import ReadModel

MAX_PENDING = 16  # batches sent and not yet written: past it the fold waits for the writer (memory stays bounded)
COALESCE = 64  # at most this many queued batches in one write


@dataclass(frozen=True, slots=True)
class ModelAt:
    """Where the writer process opens the read model (state/open.py's arguments)."""

    data_dir: Path
    redis_url: str | None = None

    def open(self) -> ReadModel:
        from state.open import open_read_model

        return open_read_model(self.data_dir, self.redis_url)


def encode(items: list[Item]) -> bytes:
    """A batch as the writer reads it: its caught-up times as a JSON object, a newline, then its changes
    as one change-feed message (core/changes.py's JSON array)."""
    caught_up: dict[str, int] = {}
    for org, out in items:
        if out.caught_up_at is not None:
            caught_up[org] = max(caught_up.get(org, 0), out.caught_up_at)
    return orjson.dumps(caught_up) + b"\n[" + b",".join(c.to_json() for _, out in items for c in out.changes) + b"]"


def apply(model: ReadModel, messages: list[bytes]) -> None:
    """Writes the messages' changes in one write, then their caught-up times (never before the figures
    they cover: the read side must not be told of figures it cannot see yet)."""
    changes = []
    caught_up: dict[str, int] = {}
    for message in messages:
        head, body = message.split(b"\n", 1)
        changes += changes_from_json(body)
        for org, at in orjson.loads(head).items():
            caught_up[org] = max(caught_up.get(org, 0), at)
    model.write(changes)
    if caught_up:
        model.caught_up(caught_up)


class WriterGone(RuntimeError):
    pass


class WriteBehind:
    """The dataflow's side of the writer process: `submit` sends a batch, `flush` waits for every batch sent.

    The automations' actions of a batch go into the outbox once the writer has written the batch's changes,
    as when the sinks wrote in turn: a digest reads its figures from the read model when it is put
    (notifier/digests.py), and a webhook's receiver that asks the read API finds what it was told about.
    A thread of this process reads the writer's acknowledgements and puts the actions they release, so the
    fold never waits for either."""

    def __init__(self, at: ModelAt, outbox: ActionOutbox | None = None, clock: Callable[[], int] = wall_clock_ms) -> None:
        data_r, data_w = os.pipe()
        ack_r, ack_w = os.pipe()
        cmd = [sys.executable, "-P", "-m", "flows.write_behind", str(data_r), str(ack_w), str(at.data_dir)]
        self._proc = subprocess.Popen([*cmd, *([at.redis_url] if at.redis_url else [])], pass_fds=(data_r, ack_w))
        os.close(data_r)
        os.close(ack_w)
        self._out = Connection(data_w, readable=False)
        self._acks = Connection(ack_r, writable=False)
        self._outbox, self._clock = outbox, clock
        self._sent = self._written = 0  # batches sent; batches written with their actions put
        self._actions: deque[tuple[int, list[Action]]] = deque()  # (batch number, its actions), not yet put
        self._error: BaseException | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, name="read-model-acks", daemon=True)
        self._reader.start()

    def submit(self, items: list[Item]) -> None:
        """From the worker thread alone (it alone counts `_sent`)."""
        message = encode(items)
        actions = [a for _, out in items for a in out.actions]
        with self._cond:
            while self._sent - self._written >= MAX_PENDING and self._error is None:
                self._cond.wait()
            self._raise()
            if actions:  # before the batch is sent: its acknowledgement may come back at once
                self._actions.append((self._sent + 1, actions))
        try:  # not holding the lock: a full pipe waits for the writer, whose acknowledgements need the lock
            self._out.send_bytes(message)
        except OSError as exc:  # the writer died: its pipe is closed
            raise self._gone() from exc
        with self._cond:
            self._sent += 1

    def flush(self) -> None:
        """Returns once every batch sent is written and its actions put; raises if the writer or a put failed."""
        with self._cond:
            while self._written < self._sent and self._error is None:
                self._cond.wait()
            self._raise()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
            self._out.close()  # the writer reads the end of the pipe and exits
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._reader.join()
            self._acks.close()
            if self._outbox is not None:
                self._outbox.close()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _read_acks(self) -> None:
        """The writer's acknowledgements, `<batches> <seconds>` per write or `!<error>`; puts the actions
        of the batches written."""
        while True:
            try:
                ack = self._acks.recv_bytes()
                if ack.startswith(b"!"):
                    raise WriterGone(f"the read-model writer failed: {ack[1:].decode(errors='replace')}")
                batches, seconds = ack.split()
                metrics.WRITE_SECONDS.inc(float(seconds))
                with self._cond:
                    written = self._written + int(batches)
                    due: list[Action] = []
                    while self._actions and self._actions[0][0] <= written:
                        due += self._actions.popleft()[1]
                if due and self._outbox is not None:
                    started = time.perf_counter()
                    self._outbox.put(due, self._clock())
                    metrics.OUTBOX_SECONDS.inc(time.perf_counter() - started)
                with self._cond:
                    self._written = written
                    self._cond.notify_all()
            except EOFError:
                with self._cond:
                    if not self._closing:
                        self._error = self._gone()
                    self._cond.notify_all()
                return
            except BaseException as exc:  # a failed write or put: the worker's next submit or flush raises it
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return

    def _gone(self) -> WriterGone:
        code = self._proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(1)  # its pipes close as it exits
        return WriterGone(f"the read-model writer exited ({code}) with {self._sent - self._written} batch(es) "
                          "unwritten; the dataflow restarts from its last snapshot")


def serve(data: Connection, acks: Connection, model: ReadModel) -> None:
    """The writer's loop: every batch waiting goes into one write, then one acknowledgement."""
    while True:
        try:
            messages = [data.recv_bytes()]
            while len(messages) < COALESCE and data.poll():
                messages.append(data.recv_bytes())
        except EOFError:  # the dataflow closed the pipe (stopped, or died)
            return
        started = time.perf_counter()
        try:
            apply(model, messages)
        except Exception as exc:
            acks.send_bytes(b"!" + f"{type(exc).__name__}: {exc}".encode())
            raise
        acks.send_bytes(f"{len(messages)} {time.perf_counter() - started:.6f}".encode())


class _Partition(StatefulSinkPartition[Item, None]):
    def __init__(self, writer: WriteBehind) -> None:
        self._writer = writer

    def write_batch(self, values: list[Item]) -> None:
        self._writer.submit(values)

    def snapshot(self) -> None:
        self._writer.flush()  # the epoch commits only once its changes are in the read model
        return None

    def close(self) -> None:
        self._writer.close()


class WriteBehindSink(FixedPartitionedSink[Item, None]):
    """Takes `(org, (org, Output))`: Bytewax hands a stateful sink the values alone, and the writer needs the org.
    Writes the read model and, after each batch's changes, puts its actions into `open_outbox()`'s outbox
    (the dataflow's separate outbox output is not used with it)."""

    def __init__(self, at: ModelAt, open_outbox: Callable[[], ActionOutbox] | None = None,
                 clock: Callable[[], int] = wall_clock_ms) -> None:
        self._at, self._open_outbox, self._clock = at, open_outbox, clock

    def list_parts(self) -> list[str]:
        return ["read_model"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(WriteBehind(self._at, None if self._open_outbox is None else self._open_outbox(), self._clock))


def main(argv: list[str]) -> None:
    # The dataflow stops us by closing the pipe, after its last write: a Ctrl-C reaching the whole process
    # group must not cut a write short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    data = Connection(int(argv[0]), writable=False)
    acks = Connection(int(argv[1]), readable=False)
    model = ModelAt(Path(argv[2]), argv[3] if len(argv) > 3 else None).open()
    try:
        serve(data, acks, model)
    finally:
        model.close()


if __name__ == "__main__":
    main(sys.argv[1:])
