"""`storepulse replay online-retail|rees46 FILE --org O [--store S] [--speed N|max]`.

Turns a real data file (see ../shared/data/SOURCES.md) into canonical events and appends them to
the event log that webhooks go to (embedded SQLite under --data-dir, or --redis). Progress on
stderr, a summary on stdout. Event ids are deterministic, so running it twice within 30 days appends
nothing new (later, the Redis log may append it again; no figure moves).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import uvloop

from core.config import Config, ConfigError, Org
from core.events import Event
from ingest.replay import DATASETS, DatasetError, Progress, Summary, append_timed, map_file
from state.log import EventLog, LogUnavailable
from state.open import log_path, open_log
from storepulse.configfile import DEFAULT_PATH, load_config
from storepulse.gc_policy import paused

_STORE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_STORE = "replay"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Adds `replay`; `common` adds --config/--data-dir/--redis (default: storepulse.cli._common)."""
    if common is None:
        from storepulse.cli import _common  # here, not at the top: cli imports this module

        common = _common

    p = subparsers.add_parser(
        "replay",
        help="replay a real data set (online-retail, rees46) into the event log",
        description="Append the events of a real data file to the event log, as webhooks would. "
        "Replaying the same file again appends nothing (event ids are deterministic).",
    )
    p.add_argument("dataset", choices=DATASETS, help="which data set FILE is (see ../shared/data/SOURCES.md)")
    p.add_argument("file", type=Path, metavar="FILE", help="the data set as .csv or .csv.gz")
    p.add_argument("--org", required=True, help="organisation (from the config) the events belong to")
    p.add_argument("--store", help=f"store id for the events (default: the org's first store, else {DEFAULT_STORE!r})")
    p.add_argument("--speed", type=_speed, default=None, metavar="N|max",
                   help="events per second (default: max, as fast as the log takes them)")
    common(p)


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected events per second (a positive number) or 'max', got {text!r}")
    return value


def pick_store(config: Config, org: Org, wanted: str | None) -> tuple[str, str | None]:
    """The store id to replay into, and a note for the user when it is not one of the org's stores."""
    store = wanted or next(iter(org.stores), DEFAULT_STORE)
    if store in org.stores:
        return store, None
    owner = config.store(store)
    if owner is not None:
        raise ConfigError(f"store {store!r} belongs to organisation {owner.org!r}, not {org.id!r}; pass --store with one of {org.id!r}'s stores")
    if not _STORE_NAME.fullmatch(store):
        raise ConfigError(f"--store {store!r}: store names use letters, digits, '-' and '_' only")
    return store, (
        f"note: store {store!r} is not in the config of organisation {org.id!r}: its events count in the "
        f"organisation's totals; add [orgs.{org.id}.stores.{store}] to the config for per-store figures"
    )


def run(args: argparse.Namespace, path: Path | None = None, config: Config | None = None) -> int:
    """Replays; 0 when done, 2 for a usage or data error, 1 when the log failed, 130 on Ctrl-C.

    `path` and `config` are the loaded config when storepulse.cli passes them; else it is loaded here.
    """
    prog = "storepulse replay"
    path = path or args.config or DEFAULT_PATH
    if config is None and args.config is None and not DEFAULT_PATH.exists():
        print(f"{prog}: no config: pass --config FILE or create ./{DEFAULT_PATH}", file=sys.stderr)
        return 2
    try:
        config = config or load_config(path)
        org = config.orgs.get(args.org)
        if org is None:
            raise ConfigError(f"no organisation {args.org!r} in {path}; it has {', '.join(sorted(config.orgs))}")
        store, note = pick_store(config, org, args.store)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"{prog}: {args.file}: no such file (the data sets are in ../shared/data)", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    where = f"Redis log {args.redis}" if args.redis else f"SQLite log {log_path(args.data_dir)}"
    bar = ProgressBar(sys.stderr)
    # Read before starting the event loop: the whole file is needed first, and Ctrl-C stops it at once.
    t = time.perf_counter()
    try:
        with paused():  # the mapper builds every event of the file: nothing for the collector to find
            mapped = map_file(args.file, args.dataset, org.id, store, bar)
    except KeyboardInterrupt:
        bar.close()
        print(f"{prog}: interrupted while reading {args.file}; nothing was appended", file=sys.stderr)
        return 130
    except DatasetError as exc:
        bar.close()
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    summary = Summary.of(mapped, time.perf_counter() - t)
    code = 0
    try:
        uvloop.run(_append(args, mapped.events, summary, bar))
    except KeyboardInterrupt:
        code = 130
    except LogUnavailable as exc:
        bar.close()
        print(f"{prog}: {exc}; run it again to append the rest (what is in the log is kept)", file=sys.stderr)
        code = 1
    bar.close()
    head = f"replay {args.dataset} {args.file} -> org {org.id}, store {store}, {where}"
    if code == 130:
        head += " (interrupted: run it again to append the rest)"
    print(format_summary(summary, head))
    return code


async def _append(args: argparse.Namespace, events: Sequence[Event], summary: Summary, bar: ProgressBar) -> None:
    log = open_log(args.data_dir, args.redis)
    try:
        await append_mapped(log, events, summary, args.speed, bar)
    finally:
        await log.close()


async def append_mapped(log: EventLog, events: Sequence[Event], summary: Summary, speed: float | None,
                        progress: Progress | None = None) -> None:
    """Appends what the mapper made, with the cyclic collector paused for a bulk append.

    The mapper made its events with the collector paused, so they are all still in its youngest
    generation: with it on, the log's allocations (rows, the instance dicts orjson makes when it
    first serializes an event or item) set off collections that walk all of them again and again
    (online-retail: ~1 s of a 1.5-2.5 s append). Appending makes few cycles. A paced append may run
    for hours, with the event loop's and client's cycles to collect: the collector stays on."""
    with paused() if speed is None else contextlib.nullcontext():
        await append_timed(log, events, summary, speed=speed, progress=progress)


def format_summary(s: Summary, head: str) -> str:
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(s.by_kind.items()))
    lines = [
        head,
        f"  rows read     {s.rows:>12,}",
        f"  events        {s.events:>12,}" + (f"  ({kinds})" if kinds else ""),
        f"  appended      {s.appended:>12,}",
        f"  duplicates    {s.duplicates:>12,}  (already in the log)",
        f"  skipped rows  {sum(s.skipped.values()):>12,}",
    ]
    width = max((len(r) for r in s.skipped), default=0)
    lines += [f"    {reason:<{width}}  {n:>10,}" for reason, n in s.skipped.most_common()]
    if s.empty_invoices:
        lines.append(f"  invoices without a counted line (no event)  {s.empty_invoices:,}")
    if s.refused:
        lines.append(f"  refused       {s.refused:>12,}  (out of range, docs/operations.md \"Limits\": not appended)")
        lines += [f"    {why}" for why in s.refused_examples]
        if s.refused > len(s.refused_examples):
            lines.append(f"    ... and {s.refused - len(s.refused_examples):,} more")
    rate = (s.appended + s.duplicates) / s.append_seconds if s.append_seconds > 0 else 0.0
    lines.append(f"  took          read+map {s.read_seconds:.1f} s, append {s.append_seconds:.1f} s ({rate:,.0f} events/s)")
    return "\n".join(lines)


class ProgressBar:
    """`phase [#####.....] 42.0%  detail` on one line of a terminal; a line every 5 s otherwise."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self._out = out
        self._width = width
        self._tty = out.isatty()
        self._interval = 0.1 if self._tty else 5.0
        self._phase = ""
        self._last = 0.0
        self._started = 0.0
        self._open = False  # a terminal line is drawn and not yet ended

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._end_line()
            self._phase, self._started, self._last = phase, now, 0.0
        finished = done >= total
        if not finished and now - self._last < self._interval:
            return
        self._last = now
        frac = done / total if total else 1.0
        filled = int(frac * self._width)
        if phase == "reading":
            detail = f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB of the file"
        else:
            rate = done / (now - self._started) if now > self._started else 0.0
            detail = f"{done:,}/{total:,} events, {rate:,.0f}/s"
        line = f"{phase:<9} [{'#' * filled}{'.' * (self._width - filled)}] {frac:6.1%}  {detail}"
        if self._tty:
            self._out.write(f"\r{line}\x1b[K")
            self._open = True
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def _end_line(self) -> None:
        if self._open:
            self._out.write("\n")
            self._out.flush()
            self._open = False

    def close(self) -> None:
        self._end_line()
