"""`storepulse rejected list|show|redrive`: inspect refused deliveries and run them again after a fix."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.config import Config
from state.rejected import UNKNOWN, BucketUsage, RejectedStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("rejected", help="list, show or redrive refused deliveries")
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="newest first")
    common(ls)
    ls.add_argument("--org")
    ls.add_argument("--store")
    ls.add_argument("--limit", type=int, default=50)
    show = verbs.add_parser("show", help="one delivery with its body and headers")
    common(show)
    show.add_argument("id")
    rd = verbs.add_parser("redrive", help="verify and normalise again with the current config; append what passes")
    common(rd)
    rd.add_argument("ids", nargs="*", help="rejected delivery ids")
    rd.add_argument("--store", help="every delivery of this store not yet redriven successfully")


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_usage(usage: dict[str, BucketUsage], config: Config, org: str | None, store: str | None) -> None:
    """What each bucket keeps and what the byte bounds dropped from it (oldest first)."""
    wanted = None if store is None else (store if config.store(store) else UNKNOWN)
    for bucket in sorted(usage):
        owner = config.store(bucket)
        if (wanted is not None and bucket != wanted) or (org is not None and (owner is None or owner.org != org)):
            continue
        u = usage[bucket]
        name = f"store {bucket}" if bucket != UNKNOWN else "unknown stores"
        print(f"{name}: {u.kept} kept ({u.kept_bytes} bytes), {u.dropped} dropped to stay within the limits "
              f"({u.dropped_bytes} bytes)")


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    from state.open import open_rejected

    store = open_rejected(args.data_dir, args.redis)
    try:
        if args.verb == "list":
            for r in store.list(org=args.org, store=args.store, limit=args.limit):
                done = f"  [{r.redrive_result}]" if r.redrive_result else ""
                cut = f"  [body cut to {len(r.body)} of {len(r.body) + r.body_cut} bytes]" if r.body_cut else ""
                print(f"{r.id}  {_when(r.received_at)}  {r.provider}/{r.store}  {r.status}  {r.reason}{cut}{done}")
            _print_usage(store.usage(), config, args.org, args.store)
            return 0
        if args.verb == "show":
            found = store.get(args.id)
            if found is None:
                print(f"storepulse: no rejected delivery {args.id}", file=sys.stderr)
                return 1
            print(json.dumps(found.to_json(), indent=2))
            return 0
        return asyncio.run(_redrive(args, config, store))
    finally:
        store.close()


async def _redrive(args: argparse.Namespace, config: Config, store: RejectedStore) -> int:
    from ingest.app import Ingest
    from ingest.monitor import ConnectionMonitor
    from state.open import open_connection_stats, open_log

    if not args.ids and not args.store:
        print("storepulse: name rejected delivery ids, or --store S", file=sys.stderr)
        return 2
    todo = [store.get(i) for i in args.ids]
    missing = [i for i, r in zip(args.ids, todo) if r is None]
    if args.store:
        todo += [r for r in store.list(store=args.store, limit=1_000_000)
                 if r.redrive_result is None or r.redrive_result.startswith("still rejected")]
    if not todo and not missing:
        print("nothing to redrive")
    log = open_log(args.data_dir, args.redis)
    monitor = ConnectionMonitor(open_connection_stats(args.data_dir, args.redis))
    ingest = Ingest(config, log, store, monitor)
    failed = len(missing)
    for i in missing:
        print(f"{i}: no such rejected delivery")
    try:
        for r in reversed([r for r in todo if r is not None]):  # oldest first, as they arrived
            result = await ingest.redrive(r)
            failed += result.startswith("still rejected")
            print(f"{r.id}: {result}")
    finally:
        await monitor.stop()
        await log.close()
    return 1 if failed else 0
