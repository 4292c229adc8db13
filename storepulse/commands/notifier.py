"""`storepulse notifier`: delivers the outbox's actions (also run inside `storepulse up`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import uvloop

from core.config import Config
from notifier.outbox import Outbox
from notifier.schedule import TIMEOUT_S
from notifier.worker import Tuning

log = logging.getLogger("storepulse")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 (at most an hour)")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Tuning()
    p.add_argument("--notifier-batch", type=int, default=d.batch, metavar="N", help="deliveries claimed per pass")
    p.add_argument("--notifier-concurrency", type=int, default=d.concurrency, metavar="N", help="attempts in flight at once")
    p.add_argument("--notifier-lease", type=_seconds, default=d.lease_ms / 1000, metavar="SECONDS",
                   help="how long a claimed delivery is held before another notifier may take it (above the timeout)")
    p.add_argument("--notifier-timeout", type=_seconds, default=TIMEOUT_S, metavar="SECONDS", help="one attempt's time limit")
    p.add_argument("--health-interval", type=_seconds, default=60.0, metavar="SECONDS",
                   help="how often the pipeline's health is looked at for `trigger = \"health\"` automations")


def health_watch(args: argparse.Namespace, config: Config, outbox: Outbox, stop: asyncio.Event) -> asyncio.Task[None]:
    """The pipeline-health watch (notifier/health_watch.py) beside a notifier, over its own stores."""
    from notifier.health_watch import HealthWatch
    from state.open import open_connection_stats, open_log_reader, open_rejected

    reader = open_log_reader(args.data_dir, args.redis)
    watch = HealthWatch(config, outbox, open_connection_stats(args.data_dir, args.redis),
                        open_rejected(args.data_dir, args.redis), log_probe=lambda: reader.read(0, None, 1))
    return asyncio.create_task(watch.run(stop, args.health_interval))


def tuning(args: argparse.Namespace) -> Tuning:
    if args.notifier_lease <= args.notifier_timeout:
        raise SystemExit(f"storepulse: --notifier-lease ({args.notifier_lease:g} s) must be longer than --notifier-timeout "
                         f"({args.notifier_timeout:g} s), or a slow attempt would be claimed twice")
    return Tuning(batch=args.notifier_batch, concurrency=args.notifier_concurrency,
                  lease_ms=int(args.notifier_lease * 1000), timeout_s=args.notifier_timeout)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("notifier", help="deliver automation actions from the outbox (Slack, e-mail, webhooks)")
    common(p)
    add_arguments(p)
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    p.add_argument("--metrics-host", default="127.0.0.1")


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    uvloop.run(_serve(args, config, tuning(args)))
    return 0


async def _serve(args: argparse.Namespace, config: Config, tuned: Tuning) -> None:
    from notifier.open import open_outbox
    from notifier.worker import Notifier
    from storepulse.servers import http_server, stop_on_signals
    from web.app import build_app

    stop = stop_on_signals()
    outbox = open_outbox(args.data_dir, args.redis)
    server = http_task = None
    if args.metrics_port:
        server = http_server(build_app([]), args.metrics_host, args.metrics_port)
        http_task = asyncio.create_task(server.serve())
    notifier = Notifier(config, outbox, tuning=tuned)
    watching = health_watch(args, config, outbox, stop)
    where = "redis " + args.redis if args.redis else f"{args.data_dir}/outbox.sqlite3"
    print(f"storepulse notifier ready: {notifier.owner} ({where})", flush=True)
    await notifier.run(stop)
    await watching
    if server is not None and http_task is not None:
        server.should_exit = True
        await http_task
    outbox.close()
