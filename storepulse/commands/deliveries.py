"""`storepulse deliveries list|show|replay`: the notifier's delivery log and dead letters."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.channels import ChannelConfigError, duration_ms
from core.config import Config
from notifier.outbox import Delivery, Status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("deliveries", help="list, show or replay the notifier's deliveries")
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="newest first")
    common(ls)
    ls.add_argument("--org", required=True)
    ls.add_argument("--status", choices=[s.value for s in Status])
    ls.add_argument("--automation")
    ls.add_argument("--channel")
    ls.add_argument("--limit", type=int, default=50)
    show = verbs.add_parser("show", help="one delivery with every attempt")
    common(show)
    show.add_argument("id")
    rp = verbs.add_parser("replay", help="deliver again (dead, cancelled or delivered), with the same delivery id")
    common(rp)
    rp.add_argument("ids", nargs="+")
    pr = verbs.add_parser("prune", help="forget delivered and cancelled deliveries that ended long ago (dead ones stay)")
    common(pr)
    pr.add_argument("--older-than", type=_age, required=True, metavar="AGE",
                    help="e.g. 30d: longer than the dataflow may replay (a forgotten action put again is sent again)")


def _age(text: str) -> int:
    try:
        return duration_ms(text, "--older-than")
    except ChannelConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _line(d: Delivery) -> str:
    a = d.action
    last = d.attempts[-1] if d.attempts else None
    tail = "" if last is None else f"  last: {last.outcome} {last.status or ''} {last.error}".rstrip()
    return f"{d.id}  {d.status:<9}  {_when(a.fired_at)}  {a.automation} -> {a.channel}  {len(d.attempts)} attempt(s){tail}"


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    from notifier.open import open_outbox
    from notifier.worker import wall_ms

    if args.verb == "list" and args.org not in config.orgs:
        print(f"storepulse: no organisation {args.org!r} in {path}", file=sys.stderr)
        return 2
    outbox = open_outbox(args.data_dir, args.redis)
    try:
        if args.verb == "list":
            status = Status(args.status) if args.status else None
            for d in outbox.list(args.org, status=status, automation=args.automation, channel=args.channel, limit=args.limit):
                print(_line(d))
            return 0
        if args.verb == "show":
            found = outbox.get(args.id)
            if found is None:
                print(f"storepulse: no delivery {args.id}", file=sys.stderr)
                return 1
            print(json.dumps(found.to_json(), indent=2))
            return 0
        if args.verb == "prune":
            total = 0
            while n := outbox.prune(wall_ms() - args.older_than):
                total += n
            print(f"forgot {total} delivered or cancelled deliveries that ended more than {args.older_than // 1000} s ago")
            return 0
        failed = 0
        for i in args.ids:
            before = outbox.get(i)
            if before is None or before.status == Status.PENDING:
                print(f"{i}: {'no such delivery' if before is None else 'pending already'}")
                failed += 1
                continue
            outbox.replay(i, wall_ms())
            print(f"{i}: pending again, due now (the running notifier delivers it with the same id)")
        return 1 if failed else 0
    finally:
        outbox.close()
