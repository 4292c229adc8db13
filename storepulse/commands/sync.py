"""`storepulse sync stripe|woocommerce --store S [--since DATE]`: backfill a store's history, resumably."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from core.config import Config

SYNCED = ("stripe", "woocommerce")  # the providers (core.config.PROVIDERS) whose API a backfill reads


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "sync", help="download a store's history from its API into the event log (resumable, no double counting)",
        description="Downloads a store's history through the same normalisers and dedupe as its webhooks, so "
                    "overlap with live webhooks never counts twice. Interrupted? Run it again: it resumes from "
                    "the last page it saved.",
    )
    p.add_argument("provider", choices=SYNCED)
    common(p)
    p.add_argument("--store", required=True, help="the store connection's id in the config")
    p.add_argument("--since", metavar="DATE",
                   help="only what was created from then on: 2024-01-31 (midnight in the organisation's time zone) "
                        "or an ISO datetime")
    p.add_argument("--restart", action="store_true", help="ignore an unfinished sync's checkpoint and start over")


def _summary(state: dict[str, Any], provider: str, store: str, seconds: float) -> str:
    resumed = f", resumed (run {state['runs']})" if state.get("runs", 1) > 1 else ""
    lines = [f"sync {provider} {store}: {state['status']} in {seconds:.1f} s{resumed}"]
    for name, c in state["resources"].items():
        lines.append(f"  {name:<18} {c['fetched']:>8} fetched {c['events']:>8} events {c['appended']:>8} new")
    lines.append(f"  {'total':<18} {state['fetched']:>8} fetched {state['events']:>8} events {state['appended']:>8} new"
                 f" ({state['events'] - state['appended']} already in the log)")
    if state.get("skipped"):
        lines.append(f"  skipped {state['skipped']} object(s) that could not be read or are out of range "
                     f"(docs/operations.md, Limits), none appended; last: {state['last_skip']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    from ingest import sync_stripe, sync_woo
    from ingest.sync import Progress, parse_since, run_sync
    from state.open import open_connection_stats, open_log

    for noisy in ("stripe", "httpx"):  # a line per request would bury the progress bar
        logging.getLogger(noisy).setLevel(logging.WARNING)
    store = config.store(args.store)
    if store is None:
        print(f"storepulse sync: no store {args.store!r} in {path}", file=sys.stderr)
        return 2
    if store.provider != args.provider:
        print(f"storepulse sync: store {store.id} is a {store.provider} connection: run "
              f"`storepulse sync {store.provider} --store {store.id}`", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since, config.orgs[store.org].tz) if args.since else None
    except ValueError as exc:
        print(f"storepulse sync: {exc}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        try:
            if args.provider == "stripe":
                resources = sync_stripe.resources(store, since)
            else:
                http = stack.enter_context(sync_woo.client())
                resources = sync_woo.resources(store, http, since)
        except ValueError as exc:
            print(f"storepulse sync: {exc}", file=sys.stderr)
            return 2
        stats = open_connection_stats(args.data_dir, args.redis)
        stack.callback(stats.close)
        started = time.monotonic()

        async def main() -> dict[str, Any]:
            log = open_log(args.data_dir, args.redis)
            try:
                return await run_sync(store, args.provider, resources, log, stats, since=since,
                                      restart=args.restart, progress=Progress())
            finally:
                await log.close()

        try:
            state = asyncio.run(main())
        except KeyboardInterrupt:
            print("storepulse sync: interrupted; run the same command again to resume", file=sys.stderr)
            return 130
    print(_summary(state, args.provider, store.id, time.monotonic() - started), flush=True)
    if state["status"] != "done":
        print(f"storepulse sync: failed: {state['error']}", file=sys.stderr)
        return 1
    return 0
