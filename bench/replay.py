"""Replay benchmark: events/s of `storepulse replay` into the SQLite log and into Redis, side by side
with baselines measured in the same run, and where the time goes.

    .venv/bin/python bench/replay.py [--repeat 3] [--copies N] [--datasets online-retail,rees46] [--no-cli]

For each data set of ../shared/data (see its SOURCES.md), all in one process, one after another:

1. parse+map (`map_file`: csv.reader and the mapper's feed(), a row at a time), then its steps:
   gunzip alone, gunzip + csv.reader alone, and by difference the mapping;
2. online-retail only, a prototype used nowhere else: DuckDB reading, classifying and grouping the
   lines and finding the distinct items in native code, Python building only the events (shared
   Items). It is how far a vectorised reader gets, and why the replay does not use it;
3. serialize: `Event.to_json()` of fresh events (what the log's writer pays first), with the
   cyclic GC on (as appends ran before) and paused (as they run now);
4. SQLite floor: the serialized bodies inserted with the log's own schema and pragmas by one
   executemany per 5,000 (no Event objects at all): what any append of these bytes costs here;
   and the same with WAL auto-checkpoints off, to show the share of the checkpoints;
5. append, new: the events (N copies under distinct store ids, so every copy is new) appended
   through `ingest.replay.append_events` in batches of 5,000 into a fresh log: the SQLite log
   (WAL, synchronous=FULL, in a temp dir) and a real redis-server (appendonly yes, appendfsync
   always, as docker-compose.yml and the tests run it); then the same again (all duplicates);
6. end to end in-process, parse+map then append into a fresh log: as `replay` did before (the
   collector on while appending: the baseline) and `ingest.replay.replay` now;
7. end to end, the real command: `storepulse replay DATASET FILE --org bench --speed max` in a
   subprocess into a fresh data dir (and into Redis), wall time including Python's start.

Every step runs `--repeat` times (a fresh log each time) and the fastest run is reported; events/s
of one step alone is the ceiling that step puts on a replay. Online-retail events are fat (an
invoice with its ~23 lines as items, ~2.8 KB of JSON) while rees46 events are one product each
(~0.5 KB), so the two data sets show the per-byte and the per-event costs of a log. The machine is
small and shared: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import gzip
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
# This file's directory is sys.path[0] when run as a script; the repo must come first.
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
import redis  # noqa: E402

from core.events import Event, Item, Kind  # noqa: E402
from ingest import replay as rp  # noqa: E402
from state.log import DEFAULT_PARTITIONS, EventLog, rows_of  # noqa: E402
from state.redis_log import RedisEventLog  # noqa: E402
from state.sqlite_log import _SCHEMA, SqliteEventLog, connect  # noqa: E402
from storepulse import STOREPULSE  # noqa: E402
from storepulse.gc_policy import paused  # noqa: E402
from tests.helpers import SHARED, RedisServer  # noqa: E402

COPIES = {"online-retail": 2, "rees46": 6}
FILES = {"online-retail": SHARED / "data" / "online_retail.csv.gz", "rees46": SHARED / "data" / "rees46_2019oct_head.csv.gz"}
TARGET = 100_000  # events/s, end to end (online-retail)


@dataclasses.dataclass
class Row:
    dataset: str
    step: str
    events: int
    seconds: float
    rows: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def best(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of `repeat` runs (the others were disturbed) and the last run's result."""
    fastest, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = run()
        fastest = min(fastest, time.perf_counter() - t)
    return fastest, out


def copies(events: list[Event], n: int) -> list[Event]:
    """n copies of the events under distinct store ids (and so distinct event ids): all new to a log."""
    out = list(events)
    for k in range(1, n):
        out += [dataclasses.replace(e, id=e.id.replace(f":{e.store}:", f":{e.store}-{k}:", 1), store=f"{e.store}-{k}")
                for e in events]
    return out


# --- where parse+map goes, and the vectorised prototype -------------------------------------------


def row_path_steps(path: Path, repeat: int) -> list[tuple[str, float]]:
    """gunzip alone and gunzip + csv.reader alone, streamed as map_file streams them."""

    def gunzip() -> None:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 16):
                pass

    def tokenize() -> None:
        with rp._csv_rows(path) as (rows, _, _):
            for _ in rows:
                pass

    return [("  gunzip alone (streamed)", best(repeat, gunzip)[0]), ("  gunzip + decode + csv.reader, no mapping", best(repeat, tokenize)[0])]


# The prototype's SQL: each line numbered in file order and classified as OnlineRetail._line does
# (for the real file, whose order and refund lines all have plain Quantity and UnitPrice; the
# guards a real reader needs for any other file are left out, they cost ~0.3 s more on a thread);
# money in integer millionths of a pound; the distinct items of counted lines numbered by first
# use; one row per invoice with its items as ids in file order.
_DUCK_LINES = r"""
CREATE OR REPLACE TEMP TABLE l AS
WITH raw AS (
    SELECT ordinality AS n, InvoiceNo AS inv, coalesce(StockCode, '') AS code, coalesce(Description, '') AS descr,
           Quantity AS qs, InvoiceDate AS d, UnitPrice AS ps, coalesce(CustomerID, '') AS cust, coalesce(Country, '') AS country,
           CASE WHEN regexp_full_match(InvoiceNo, '[0-9]+') THEN 0 WHEN regexp_full_match(InvoiceNo, 'C[0-9]+') THEN 1
                WHEN starts_with(InvoiceNo, 'A') THEN 2 ELSE 3 END AS kind
    FROM read_csv($path, header = true, delim = ',', quote = '"', escape = '"', auto_detect = false, strict_mode = true,
                  columns = {'InvoiceNo': 'VARCHAR', 'StockCode': 'VARCHAR', 'Description': 'VARCHAR', 'Quantity': 'VARCHAR',
                             'InvoiceDate': 'VARCHAR', 'UnitPrice': 'VARCHAR', 'CustomerID': 'VARCHAR', 'Country': 'VARCHAR'})
         WITH ORDINALITY
), parsed AS (
    SELECT *, CAST(qs AS BIGINT) AS q, CAST(CAST(ps AS DECIMAL(18, 6)) * 1000000 AS BIGINT) AS micros FROM raw WHERE kind < 2
)
SELECT *, coalesce((kind = 0 AND q > 0 OR kind = 1 AND q < 0) AND micros > 0, false) AS counted, abs(q) AS aq,
       (micros + 5000) // 10000 AS minor, (CAST(abs(q) AS HUGEINT) * micros + 5000) // 10000 AS pence
FROM parsed
"""
_DUCK_ITEMS = """
CREATE OR REPLACE TEMP TABLE items AS
SELECT row_number() OVER (ORDER BY first) - 1 AS id, code, aq, minor, descr
FROM (SELECT code, aq, minor, descr, min(n) AS first FROM l WHERE counted GROUP BY ALL)
"""
_DUCK_INVOICES = """
SELECT l.inv, any_value(l.kind) = 1, min(l.n), list(DISTINCT l.d), arg_min(l.cust, l.n), arg_min(l.country, l.n),
       sum(l.pence) FILTER (WHERE l.counted), list(items.id ORDER BY l.n) FILTER (WHERE l.counted)
FROM l LEFT JOIN items ON l.counted AND l.code = items.code AND l.aq = items.aq AND l.minor = items.minor AND l.descr = items.descr
GROUP BY l.inv
"""


def duckdb_map(path: Path, org: str, store: str) -> list[Event]:
    """The prototype: online-retail's events (as map_file's), DuckDB doing the per-line work."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(_DUCK_LINES, {"path": str(path)})
        con.execute(_DUCK_ITEMS)
        items = [Item(c, q, m, d.strip()) for c, q, m, d in con.execute("SELECT code, aq, minor, descr FROM items ORDER BY id").fetchall()]
        invoices = con.execute(_DUCK_INVOICES).fetchall()
    finally:
        con.close()
    london, item = ZoneInfo("Europe/London"), items.__getitem__
    ms: dict[str, int] = {}
    timed = []
    for number, refund, seq, dates, cust, country, amount, ids in invoices:
        if ids is None:
            continue  # no counted line: no event
        at = min(ms[d] if d in ms else ms.setdefault(d, rp._local_ms(d, london)) for d in dates)
        country = country.strip()
        timed.append((at, seq, Event(
            id=f"replay:{store}:invoice:{number}", kind=Kind.ORDER_REFUNDED if refund else Kind.ORDER_PAID, org=org,
            store=store, time=at, amount=int(amount), currency="GBP", customer=str(int(cust.split(".")[0])) if cust else None,
            order=None if refund else number, refund=number if refund else None, items=tuple(map(item, ids)), raw_id=number,
            attrs={"country": country} if country else {})))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in timed]


def paused_gc(run: Callable[[], Any]) -> Callable[[], Any]:
    def go() -> Any:
        with paused():
            return run()
    return go


def serialize_fresh(make: Callable[[], list[Event]], repeat: int, collector: bool) -> tuple[float, int]:
    """to_json of events just made (new ones each run: the first serialization of an event costs
    more than later ones), with the cyclic collector on or paused."""
    fastest, size = float("inf"), 0
    for _ in range(repeat):
        gc.collect()
        events = make()  # not collected after: a replay appends what the mapper just made, as is
        with contextlib.nullcontext() if collector else paused():
            t = time.perf_counter()
            size = sum(len(e.to_json()) for e in events)
            fastest = min(fastest, time.perf_counter() - t)
    return fastest, size


def sqlite_floor(events: list[Event], tmp: Path, repeat: int, checkpoints: bool) -> float:
    """Inserting the serialized bodies alone, as the log does (its schema, WAL, synchronous=FULL)."""
    rows = rows_of(events, DEFAULT_PARTITIONS)  # what the log inserts

    def run() -> None:
        conn = connect(tmp / f"floor-{time.monotonic_ns()}.sqlite3")
        if not checkpoints:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(_SCHEMA)
        for i in range(0, len(rows), rp.BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO events (part, org, id, body) VALUES (?, ?, ?, ?)", rows[i : i + rp.BATCH])
            conn.execute("COMMIT")
        conn.close()

    return best(repeat, run)[0]


# --- appends and end to end ----------------------------------------------------------------------


async def _append_twice(make_log: Callable[[], EventLog], events: list[Event]) -> tuple[rp.Summary, float, rp.Summary, float]:
    log = make_log()
    try:
        first = rp.Summary()
        t = time.perf_counter()
        await rp.append_events(log, events, first)
        t_first = time.perf_counter() - t
        again = rp.Summary()
        t = time.perf_counter()
        await rp.append_events(log, events, again)
        t_again = time.perf_counter() - t
    finally:
        await log.close()
    return first, t_first, again, t_again


async def _replay_before(make_log: Callable[[], EventLog], path: Path, dataset: str) -> rp.Summary:
    """What `replay` did before this benchmark's changes: map_file, then batches of 5,000 appended
    with the cyclic collector on (append_events now pauses it)."""
    log = make_log()
    try:
        mapped = rp.map_file(path, dataset, "bench", "e2e")
        summary = rp.Summary.of(mapped, 0.0)
        for i in range(0, len(mapped.events), rp.BATCH):
            results = await log.append(mapped.events[i : i + rp.BATCH])
            summary.appended += sum(results)
            summary.duplicates += len(results) - sum(results)
        return summary
    finally:
        await log.close()


async def _replay(make_log: Callable[[], EventLog], path: Path, dataset: str) -> rp.Summary:
    log = make_log()
    try:
        return await rp.replay(path, dataset, log, "bench", "e2e")
    finally:
        await log.close()


_CONFIG = """
[orgs.bench]
currency = "GBP"
token = "bench-token-0123456789"

[orgs.bench.stores.replay]
provider = "events"
secret = "s"
"""


def cli_run(dataset: str, path: Path, tmp: Path, redis_url: str | None) -> tuple[float, str]:
    """`storepulse replay ... --speed max` in a subprocess: wall seconds and its own 'took' line."""
    cfg = tmp / "bench.toml"
    cfg.write_text(_CONFIG)
    argv = [*STOREPULSE, "replay", dataset, str(path), "--org", "bench", "--speed", "max",
            "--config", str(cfg), "--data-dir", str(tmp / f"cli-{time.monotonic_ns()}")]
    if redis_url:
        argv += ["--redis", redis_url]
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp, check=True)
    seconds = time.perf_counter() - t
    took = re.search(r"took +(.*)", out.stdout)
    return seconds, took.group(1) if took else out.stdout[-200:]


def bench_dataset(dataset: str, n_copies: int, repeat: int, tmp: Path, redis_url: str, cli: bool) -> list[Row]:
    path = FILES[dataset]
    out: list[Row] = []
    seconds, mapped = best(repeat, lambda: rp.map_file(path, dataset, "bench", "s"))
    n = len(mapped.events)
    out.append(Row(dataset, "parse+map (map_file: csv.reader + feed), the baseline", n, seconds, rows=mapped.rows))
    (gunzip, s_gunzip), (tokenize, s_tokenize) = row_path_steps(path, repeat)
    out += [Row(dataset, gunzip, n, s_gunzip), Row(dataset, tokenize, n, s_tokenize),
            Row(dataset, "  mapping: feed() and finish() (by difference)", n, max(seconds - s_tokenize, 1e-9))]
    makers: list[tuple[str, Callable[[], list[Event]]]] = [("map_file's", lambda: rp.map_file(path, dataset, "bench", "s").events)]
    if dataset == "online-retail":
        s_duck, duck = best(repeat, paused_gc(lambda: duckdb_map(path, "bench", "s")))
        assert duck == mapped.events, "the DuckDB prototype must give map_file's events"
        out.append(Row(dataset, "prototype, not used: DuckDB parse+map (shared Items, no plain-CSV guard)", n, s_duck))
        makers.append(("the prototype's", lambda: duckdb_map(path, "bench", "s")))
    for label, make in makers:
        for collector in (True, False):
            seconds, body_bytes = serialize_fresh(make, repeat, collector)
            out.append(Row(dataset, f"serialize {label} fresh events (to_json, {body_bytes / n:,.0f} B/event), "
                           f"collector {'on' if collector else 'paused'}", n, seconds))
    out.append(Row(dataset, "SQLite floor: executemany of the bodies (log schema, FULL)", n, sqlite_floor(mapped.events, tmp, repeat, True)))
    out.append(Row(dataset, "  the same, WAL auto-checkpoint off", n, sqlite_floor(mapped.events, tmp, repeat, False)))

    events = copies(mapped.events, n_copies)
    flush = redis.Redis.from_url(redis_url)
    backends: list[tuple[str, Callable[[], EventLog]]] = [
        ("SQLite", lambda: SqliteEventLog(tmp / f"{dataset}-{time.monotonic_ns()}.sqlite3")),
        ("Redis", lambda: RedisEventLog(redis_url)),
    ]
    distinct = len({(e.org, e.id) for e in events})
    for name, make_log in backends:
        t_new = t_dup = float("inf")
        for _ in range(repeat):
            flush.flushall()
            first, t1, again, t2 = asyncio.run(_append_twice(make_log, events))
            assert (first.appended, again.appended) == (distinct, 0), (name, first, again)
            t_new, t_dup = min(t_new, t1), min(t_dup, t2)
        out.append(Row(dataset, f"{name} append, new ({n_copies} copies, serialized before)", len(events), t_new))
        out.append(Row(dataset, f"{name} append, all duplicates", len(events), t_dup))
    for name, make_log in backends:
        for label, go in (("before (collector on while appending): baseline", _replay_before), ("now (`replay`)", _replay)):
            fastest = float("inf")
            for _ in range(repeat):
                flush.flushall()
                gc.collect()
                t = time.perf_counter()
                s = asyncio.run(go(make_log, path, dataset))
                fastest = min(fastest, time.perf_counter() - t)
                assert s.appended == distinct // n_copies, s
            out.append(Row(dataset, f"end to end in-process into {name}, {label}", s.events, fastest, rows=s.rows))
    if cli:
        for name, url in (("SQLite", None), ("Redis", redis_url)):
            fastest, took = float("inf"), ""
            for _ in range(repeat):
                flush.flushall()
                seconds, said = cli_run(dataset, path, tmp, url)
                if seconds < fastest:
                    fastest, took = seconds, said
            out.append(Row(dataset, f"`storepulse replay --speed max` into {name} (it says: {took})", n, fastest, rows=mapped.rows))
    flush.flushall()
    flush.close()
    return out


def table(rows: list[Row]) -> str:
    lines = ["| data set | step | events | s | events/s | rows/s | vs baseline |", "|---|---|---:|---:|---:|---:|---:|"]
    base: dict[str, float] = {}
    for r in rows:
        base.setdefault(r.dataset, r.rate)
        rows_s = f"{r.rows / r.seconds:,.0f}" if r.rows else ""
        lines.append(f"| {r.dataset} | {r.step} | {r.events:,} | {r.seconds:.3f} | {r.rate:,.0f} | {rows_s} | {r.rate / base[r.dataset]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--copies", type=int, help="copies of each data set's events appended, under distinct store ids "
                    f"(default: {', '.join(f'{k} {v}' for k, v in COPIES.items())}, about 50,000 and 100,000 events)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each step; the fastest is reported")
    ap.add_argument("--datasets", default="online-retail,rees46")
    ap.add_argument("--no-cli", action="store_true", help="skip the runs of the real command in a subprocess")
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
                rows += bench_dataset(ds, args.copies or COPIES[ds], args.repeat, Path(tmp), server.url, not args.no_cli)
                print(f"  {ds} done", file=sys.stderr, flush=True)
        finally:
            server.stop()
    print(table(rows))
    print(f"load average {os.getloadavg()[0]:.2f} at the end; target: online-retail end to end >= {TARGET:,} events/s")


if __name__ == "__main__":
    main()
