"""Replay benchmark: events/s of `storepulse replay` into the SQLite log and into Redis, side by side
with baselines measured in the same run.

    .venv/bin/python bench/replay.py [--proposed] [--repeat 2] [--copies N] [--datasets online-retail,rees46]

For each data set of ../shared/data (see its SOURCES.md), all in one process, one after another:

1. parse+map: read the .csv.gz and map it to canonical events, no log (the baseline);
2. serialize: `Event.to_json()` of every event, no log (what any append must pay at least);
3. append, new: the events (N copies under distinct store ids, so every copy is new) appended
   through `ingest.replay.append_events` in batches of 5,000 into a fresh log: the SQLite log
   (WAL, synchronous=FULL, in a temp dir) and a real redis-server (appendonly yes, appendfsync
   always, as docker-compose.yml and the tests run it);
4. append, duplicates: the same events again (a second replay: everything is a duplicate);
5. end to end: `ingest.replay.replay` of the file into a fresh log (parse+map, then append).

Every step runs `--repeat` times (a fresh log each time) and the fastest run is reported.
`--proposed` also measures prototypes of bulk appends for state/sqlite_log.py and
state/redis_log.py (defined below, used nowhere else) against the same data, so the gain of the
change proposed in bench/RESULTS.md is measured rather than guessed.

Online-retail events are fat (an invoice with its ~23 lines as items, ~2.8 KB of JSON) while
rees46 events are one product each (~0.5 KB), so the two data sets show the per-byte and the
per-event costs of a log. The machine is small and shared: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This file's directory is sys.path[0] when run as a script; the repo must come first.
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from core.events import Event  # noqa: E402
from ingest.replay import Summary, append_events, map_file, replay  # noqa: E402
from state.log import EventLog, LogUnavailable, partition_of  # noqa: E402
from state.redis_log import DEDUPE_TTL_SECONDS, RedisEventLog, seen_key, stream_key  # noqa: E402
from state.sqlite_log import SqliteEventLog  # noqa: E402
from tests.helpers import SHARED, RedisServer  # noqa: E402

COPIES = {"online-retail": 2, "rees46": 6}
FILES = {"online-retail": SHARED / "data" / "online_retail.csv.gz", "rees46": SHARED / "data" / "rees46_2019oct_head.csv.gz"}


# --- prototypes of the proposed bulk appends (see bench/RESULTS.md) -------------------------------


class ProbeSqliteEventLog(SqliteEventLog):
    """Proposed for duplicate-heavy appends (a replay run again, a redrive): one index probe for the
    whole group commit finds the duplicates first, so only new events are serialized and inserted."""

    def _commit(self, batch: list[tuple[Sequence[Event], Future[list[bool]]]]) -> None:
        results: list[list[bool]] = []
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            known = _existing(cur, {(e.org, e.id) for events, _ in batch for e in events})
            rows = []
            for events, _ in batch:
                res = []
                for e in events:
                    key = (e.org, e.id)
                    new = key not in known
                    if new:
                        known.add(key)  # a second copy in the same commit is a duplicate
                        rows.append((partition_of(e.org, self.partitions), e.org, e.id, e.to_json()))
                    res.append(new)
                results.append(res)
            cur.executemany("INSERT INTO events (part, org, id, body) VALUES (?, ?, ?, ?)", rows)
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            for _, fut in batch:
                fut.set_exception(LogUnavailable(f"event log write failed: {exc}"))
            return
        for (_, fut), res in zip(batch, results):
            if not fut.cancelled():
                fut.set_result(res)


def _existing(cur: sqlite3.Cursor, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    by_org: dict[str, list[str]] = {}
    for org, eid in keys:
        by_org.setdefault(org, []).append(eid)
    found: set[tuple[str, str]] = set()
    for org, ids in by_org.items():
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            marks = ",".join("?" * len(chunk))
            found.update(cur.execute(f"SELECT org, id FROM events WHERE org = ? AND id IN ({marks})", (org, *chunk)))
    return found


_APPEND_MANY = """
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
"""
_REDIS_CHUNK = 500  # events per script call: bounds how long one call holds the server


class BulkRedisEventLog(RedisEventLog):
    """Proposed `append`: one script call per partition and 500 events (KEYS = the stream and the
    dedupe marks, all under the partition's hash tag, so it still works on Redis Cluster)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._append_many = self._redis.register_script(_APPEND_MANY)

    async def append(self, events: Sequence[Event]) -> list[bool]:
        by_part: dict[int, list[int]] = {}
        for i, e in enumerate(events):
            by_part.setdefault(partition_of(e.org, self.partitions), []).append(i)
        chunks: list[list[int]] = []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for p, idx in by_part.items():
                    for c in range(0, len(idx), _REDIS_CHUNK):
                        part = idx[c : c + _REDIS_CHUNK]
                        await self._append_many(
                            keys=[stream_key(p), *(seen_key(p, events[i].org, events[i].id) for i in part)],
                            args=[DEDUPE_TTL_SECONDS, *(events[i].to_json() for i in part)],
                            client=pipe,
                        )
                        chunks.append(part)
                replies = await pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise LogUnavailable(f"event log (Redis) unreachable: {exc}") from exc
        except redis.ResponseError as exc:
            raise LogUnavailable(f"event log (Redis) refused the write: {exc}") from exc
        out = [False] * len(events)
        for part, reply in zip(chunks, replies):
            for i, r in zip(part, reply):
                out[i] = r == 1
        return out


# --- measuring -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    dataset: str
    step: str
    events: int
    seconds: float
    rows: int = 0
    appended: int | None = None
    duplicates: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def copies(events: list[Event], n: int) -> list[Event]:
    """n copies of the events under distinct store ids (and so distinct event ids): all new to a log."""
    out = list(events)
    for k in range(1, n):
        out += [dataclasses.replace(e, id=e.id.replace(f":{e.store}:", f":{e.store}-{k}:", 1), store=f"{e.store}-{k}")
                for e in events]
    return out


async def _append_twice(make_log, events: list[Event]) -> tuple[Summary, float, Summary, float]:  # noqa: ANN001
    log: EventLog = make_log()
    try:
        first = Summary()
        t = time.perf_counter()
        await append_events(log, events, first)
        t_first = time.perf_counter() - t
        again = Summary()
        t = time.perf_counter()
        await append_events(log, events, again)
        t_again = time.perf_counter() - t
    finally:
        await log.close()
    return first, t_first, again, t_again


async def _replay(make_log, path: Path, dataset: str) -> Summary:  # noqa: ANN001
    log: EventLog = make_log()
    try:
        return await replay(path, dataset, log, "bench", "e2e")
    finally:
        await log.close()


def bench_dataset(dataset: str, n_copies: int, repeat: int, proposed: bool, tmp: Path, redis_url: str) -> list[Row]:
    """Each step `repeat` times (a fresh log each time); the fastest counts, as the others were disturbed."""
    path = FILES[dataset]
    out: list[Row] = []
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        mapped = map_file(path, dataset, "bench", "s")
        best = min(best, time.perf_counter() - t)
    out.append(Row(dataset, "parse+map, no log (baseline)", len(mapped.events), best, rows=mapped.rows))
    events = copies(mapped.events, n_copies)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        body_bytes = sum(len(e.to_json()) for e in events)
        best = min(best, time.perf_counter() - t)
    out.append(Row(dataset, f"serialize (to_json) only, {body_bytes / len(events):,.0f} B/event", len(events), best))

    flush = redis.Redis.from_url(redis_url)
    backends = [("SQLite", lambda: SqliteEventLog(tmp / f"{dataset}-{time.monotonic_ns()}.sqlite3")),
                ("Redis", lambda: RedisEventLog(redis_url))]
    if proposed:
        backends += [("SQLite probe first (proposed)", lambda: ProbeSqliteEventLog(tmp / f"{dataset}-{time.monotonic_ns()}.sqlite3")),
                     ("Redis bulk script (proposed)", lambda: BulkRedisEventLog(redis_url))]
    distinct = len({(e.org, e.id) for e in events})
    for name, make in backends:
        t_new = t_dup = float("inf")
        for _ in range(repeat):
            flush.flushall()
            first, t1, again, t2 = asyncio.run(_append_twice(make, events))
            assert (first.appended, again.appended) == (distinct, 0), (name, first, again)
            t_new, t_dup = min(t_new, t1), min(t_dup, t2)
        out.append(Row(dataset, f"{name} append, new", len(events), t_new, appended=first.appended, duplicates=first.duplicates))
        out.append(Row(dataset, f"{name} append, all duplicates", len(events), t_dup, appended=again.appended, duplicates=again.duplicates))
    for name, make in backends[:2]:
        best = float("inf")
        for _ in range(repeat):
            flush.flushall()
            t = time.perf_counter()
            s = asyncio.run(_replay(make, path, dataset))
            best = min(best, time.perf_counter() - t)
        out.append(Row(dataset, f"end to end `replay` into {name} (map + append)", s.events, best,
                       rows=s.rows, appended=s.appended, duplicates=s.duplicates))
    flush.flushall()
    flush.close()
    return out


def table(rows: list[Row]) -> str:
    lines = ["| data set | step | events | s | events/s | rows/s | vs parse+map |", "|---|---|---:|---:|---:|---:|---:|"]
    base: dict[str, float] = {}
    for r in rows:
        base.setdefault(r.dataset, r.rate)
        rows_s = f"{r.rows / r.seconds:,.0f}" if r.rows else ""
        lines.append(f"| {r.dataset} | {r.step} | {r.events:,} | {r.seconds:.2f} | {r.rate:,.0f} | {rows_s} | {r.rate / base[r.dataset]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--copies", type=int, help="copies of each data set's events appended, under distinct store ids "
                    f"(default: {', '.join(f'{k} {v}' for k, v in COPIES.items())}, about 50,000 and 100,000 events)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each step; the fastest is reported")
    ap.add_argument("--proposed", action="store_true", help="also measure the proposed bulk appends")
    ap.add_argument("--datasets", default="online-retail,rees46")
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    for ds in datasets:
        if not FILES[ds].exists():
            raise SystemExit(f"{FILES[ds]} is missing: the benchmark replays the real files of ../shared/data")
    print(f"# replay benchmark: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        server = RedisServer(Path(tmp) / "redis")
        try:
            for ds in datasets:
                rows += bench_dataset(ds, args.copies or COPIES[ds], args.repeat, args.proposed, Path(tmp), server.url)
                print(f"  {ds} done", file=sys.stderr, flush=True)
        finally:
            server.stop()
    print(table(rows))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
