"""`storepulse notify test CHANNEL [--org O]`: send a test message to a channel now."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from core.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("notify", help="send a test message to a channel")
    verbs = p.add_subparsers(dest="verb", required=True)
    test = verbs.add_parser("test", help="send a test message now (a success enables a disabled channel again)")
    common(test)
    test.add_argument("channel")
    test.add_argument("--org", help="the channel's organisation (needed when several have a channel of that id)")
    test.add_argument("--to", metavar="ADDRESS", help='for an e-mail channel with to = "customer": where the test goes')


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    from notifier.open import open_outbox
    from notifier.worker import Notifier

    found = [org.channels[args.channel] for org in config.orgs.values()
             if args.channel in org.channels and args.org in (None, org.id)]
    if len(found) != 1:
        where = f"orgs.{args.org}" if args.org else "any organisation"
        print(f"storepulse: {'no' if not found else 'more than one'} channel {args.channel!r} in {where} of {path}"
              + ("" if not found else ": pass --org"), file=sys.stderr)
        return 2
    outbox = open_outbox(args.data_dir, args.redis)

    async def send() -> int:
        notifier = Notifier(config, outbox)
        try:
            attempt = await notifier.test(found[0], args.to)
        finally:
            await notifier.close()
        status = "" if attempt.status is None else f" {attempt.status}"
        print(f"{found[0].org}/{found[0].id}: {attempt.outcome}{status} in {attempt.latency_ms:.0f} ms"
              + (f": {attempt.error}" if attempt.error else ""))
        return 0 if attempt.outcome == "delivered" else 1

    try:
        return asyncio.run(send())
    finally:
        outbox.close()
