"""The dataflow hands the read model each organisation's batch whole: a reader never sees the
figures of a batch without its customers (seen before: a replay's first 4,099 orders in the figures,
none of their customers yet), because one batch's changes never straddle two writes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from core.changes import Change, Record
from core.config import parse_config
from core.events import Event, Item, Kind
from core.records import Customer
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from state.sqlite_log import SqliteEventLog, SqliteLogReader

PARTITIONS = 4
CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_795_338_000_000


class RecordingModel:
    writes: list[list[Change]] = []

    def write(self, changes: Sequence[Change]) -> None:
        RecordingModel.writes.append(list(changes))

    def close(self) -> None:
        pass


def test_a_batch_of_thousands_of_changes_is_one_write(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", PARTITIONS)
    log.append_sync([Event(id=f"e{i}", kind=Kind.ORDER_PAID, org="o", store="s", time=T0 + i * 1000, amount=1000 + i,
                           currency="EUR", order=f"o{i}", customer=f"c{i}", items=(Item(f"p{i % 50}", 1, 1000 + i),))
                     for i in range(6000)])
    asyncio.run(log.close())
    ensure_recovery_dir(tmp_path / "recovery", 1)
    RecordingModel.writes = []
    flow = build_flow(CONFIG, lambda: SqliteLogReader(tmp_path / "log.sqlite3", PARTITIONS), RecordingModel,
                      PARTITIONS, until_caught_up=True, files_dir=tmp_path / "recovery" / "segments",
                      clock=lambda: T0 + 30 * 86_400_000)  # frozen, a month after the events: no wall-clock ticks
    run_main(flow, recovery_config=RecoveryConfig(str(tmp_path / "recovery")))
    writes_of: dict[int, set[int]] = defaultdict(set)
    for n, changes in enumerate(RecordingModel.writes):
        for c in changes:
            writes_of[c.version].add(n)
    assert writes_of, "the dataflow wrote nothing"
    split = {v: sorted(ns) for v, ns in writes_of.items() if len(ns) > 1}
    assert not split, f"batches split across writes: {split}"
    biggest = max(len(w) for w in RecordingModel.writes)
    assert biggest > 6000, f"the test needs a batch bigger than Bytewax's containers (1,024 items), got {biggest}"
    customers = {c.key for w in RecordingModel.writes for c in w if isinstance(c, Record) and isinstance(c.value, Customer)}
    assert len(customers) == 6000
