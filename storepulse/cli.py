"""`storepulse up|ingest|flows|gateway`: run everything in one command, or each part alone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop
from starlette.routing import BaseRoute
from starlette.types import ExceptionHandler

from core.config import Config, ConfigError, Store
from core.rates import Rates
from state.rejected import KEEP_BYTES, STORE_BYTES, TOTAL_BYTES, RejectedLimits
from storepulse import STOREPULSE
from storepulse.commands import deliveries, notifier, notify, rejected, replay, share, sync
from storepulse.commands import rates as rates_command
from storepulse.configfile import DEFAULT_PATH, demo_config, demo_credentials, load_config, load_rates
from storepulse.demo import run as demo_run
from storepulse.demo.inbox import Inbox
from storepulse.gc_policy import SERVERS, settle
from storepulse.servers import HttpLimits, http_server, reuse_port_socket, stop_on_signals
from web.app import build_app
from ws_gateway import limits as gateway_limits

if TYPE_CHECKING:
    from ws_gateway.preview_index import PreviewIndex

log = logging.getLogger("storepulse")

# Commands beyond the servers: each module has register(subparsers, common) and run(args, path, config).
_COMMANDS = {"rejected": rejected, "sync": sync, "replay": replay, "share": share, "notifier": notifier,
             "notify": notify, "deliveries": deliveries}
_NO_CONFIG = {"rates": rates_command}  # commands that need no config file


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=f"TOML config (default: ./{DEFAULT_PATH})")
    p.add_argument("--data-dir", type=Path, default=Path(".storepulse"), help="where SQLite files and recovery snapshots live")
    p.add_argument("--redis", metavar="URL", help="use Redis (distributed) instead of embedded SQLite")


def _servers(p: argparse.ArgumentParser, http: bool = True, ws: bool = True) -> None:
    p.add_argument("--host", default="127.0.0.1")
    if http:
        p.add_argument("--http-port", type=int, default=8080)
        d = HttpLimits()
        p.add_argument("--keep-alive-timeout", type=seconds, default=d.keep_alive, metavar="SECONDS",
                       help="an HTTP connection idle this long (before a request or between two) is closed")
        p.add_argument("--header-timeout", type=seconds, default=d.header_timeout, metavar="SECONDS",
                       help="a request whose headers are not complete this long after its first byte gets 408 and is closed")
        p.add_argument("--max-header-bytes", type=byte_size, default=d.max_header_bytes, metavar="SIZE",
                       help="request line and headers (431 above)")
        p.add_argument("--max-connections", type=positive, default=d.max_connections, metavar="N",
                       help="HTTP connections open at once; a request beyond them gets 503")
    if ws:
        p.add_argument("--ws-port", type=int, default=8081)


_UNITS = {"": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def byte_size(text: str) -> int:
    """A size in bytes: 65536, 64KiB, 8MiB, 1GiB."""
    number = text.rstrip("KMGiB")
    unit = text[len(number):]
    if not number.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write bytes, or a number with KiB, MiB or GiB")
    return int(number) * _UNITS[unit]


def positive(text: str) -> int:
    """A whole number above 0."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 (and below a day)")
    return value


def _rejected_limits(args: argparse.Namespace) -> RejectedLimits | None:
    """The rejected store's bounds from --rejected-*-bytes (None: a command without them, the defaults)."""
    if not hasattr(args, "rejected_total_bytes"):
        return None
    try:
        return RejectedLimits(args.rejected_total_bytes, args.rejected_store_bytes, args.rejected_keep_bytes)
    except ValueError as exc:
        raise ConfigError(f"--rejected-*-bytes: {exc}") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="storepulse", description="Real-time e-commerce analytics and automation.")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run ingest, dataflow and gateway together (embedded SQLite unless --redis)")
    _common(up)
    _servers(up)
    up.add_argument("--flows-metrics-port", type=int, default=0, help="Prometheus port of the dataflow process (0: off)")
    demo_run.add_arguments(up)
    notifier.add_arguments(up)  # `up` runs a notifier too
    ing = sub.add_parser("ingest", help="run the webhook endpoints alone")
    _common(ing)
    _servers(ing, ws=False)
    ing.add_argument("--processes", type=int, default=1,
                     help="ingest processes sharing the HTTP port (SO_REUSEPORT); /metrics sums over them")
    ing.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each of --processes
    for p in (up, ing):
        p.add_argument("--max-body", type=int, default=1024 * 1024, metavar="BYTES", help="largest accepted body (413 above)")
        p.add_argument("--body-timeout", type=seconds, default=30.0, metavar="SECONDS",
                       help="a body not complete this long after its headers gets 408 and its connection is closed")
        p.add_argument("--rejected-total-bytes", type=byte_size, default=TOTAL_BYTES, metavar="SIZE",
                       help="refused deliveries kept, in all (oldest dropped past it; e.g. 64MiB)")
        p.add_argument("--rejected-store-bytes", type=byte_size, default=STORE_BYTES, metavar="SIZE",
                       help="refused deliveries kept per store; unknown store ids share one (e.g. 8MiB)")
        p.add_argument("--rejected-keep-bytes", type=byte_size, default=KEEP_BYTES, metavar="SIZE",
                       help="of a refused delivery's body, and of its headers, the prefix kept (e.g. 64KiB)")
    gw = sub.add_parser("gateway", help="run the read API, WebSocket server and dashboard alone")
    _common(gw)
    _servers(gw)
    for p in (up, gw):
        gateway_limits.add_arguments(p)
    fl = sub.add_parser("flows", help="run the dataflow alone")
    _common(fl)
    fl.add_argument("-w", "--workers", type=int, default=1, help="worker threads in this process")
    fl.add_argument("-i", "--process-id", type=int, help="this process's index in a cluster")
    fl.add_argument("-a", "--addresses", help="host:port of every cluster process, ';'-separated")
    for p in (up, fl):  # `up` hands them to its dataflow process
        p.add_argument("--epoch-ms", type=int, default=2000, help="how often state and offsets are snapshotted")
        p.add_argument("--refund-horizon-days", type=int, default=366, metavar="DAYS",
                       help="how long an order's facts are held for refunds, and how late an event may still change "
                            "figures (docs/operations.md)")
        p.add_argument("--write-behind", action="store_true",
                       help="one worker: a child process writes the read model while the worker folds (docs/operations.md)")
    fl.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: off)")
    fl.add_argument("--metrics-host", default="127.0.0.1")
    fl.add_argument("--until-caught-up", action="store_true", help="stop once the log is read to its end (batch runs)")
    for module in (*_COMMANDS.values(), *_NO_CONFIG.values()):
        module.register(sub, _common)
    return ap


def _config(args: argparse.Namespace, allow_demo: bool) -> tuple[Path, Config, bool]:
    """(path, config, whether it is the demo's)."""
    path = args.config
    if path is None:
        if DEFAULT_PATH.exists():
            path = DEFAULT_PATH
        elif allow_demo:
            path = demo_config(args.data_dir, args.http_port)
            return path, load_config(path), True
        else:
            raise ConfigError(f"no config: pass --config FILE or create ./{DEFAULT_PATH}")
    return path, load_config(path), False


def main(argv: list[str] | None = None) -> None:
    faulthandler.enable()  # a crash in native code (SQLite, Bytewax) leaves a traceback in the log
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command in _NO_CONFIG:
        raise SystemExit(_NO_CONFIG[args.command].run(args, Path(), Config({})))
    try:
        path, config, demo = _config(args, allow_demo=args.command == "up")
        rates = load_rates(config, path, args.data_dir)
        bounds = _rejected_limits(args)
    except ConfigError as exc:
        print(f"storepulse: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command in ("ingest", "gateway") and not args.redis:
        print(f"storepulse {args.command}: running a part alone needs --redis URL (use `storepulse up` for embedded)", file=sys.stderr)
        raise SystemExit(2)
    if args.command in _COMMANDS:
        raise SystemExit(_COMMANDS[args.command].run(args, path, config))
    if args.command == "flows":
        from flows.run import run_flows
        from notifier.digests import DigestingOutbox
        from notifier.open import open_outbox
        from state.open import open_read_model

        addresses = args.addresses.split(";") if args.addresses else None
        run_flows(
            config, args.data_dir, args.redis, workers=args.workers, process_id=args.process_id,
            addresses=addresses, epoch_interval=timedelta(milliseconds=args.epoch_ms),
            horizon_ms=args.refund_horizon_days * 86_400_000,
            metrics_port=args.metrics_port or None, metrics_host=args.metrics_host,
            until_caught_up=args.until_caught_up, write_behind=args.write_behind,
            # automations' actions (flows/outbox_sink.py); digests filled from the read model (notifier/digests.py)
            open_outbox=lambda: DigestingOutbox(open_outbox(args.data_dir, args.redis),
                                                open_read_model(args.data_dir, args.redis), config, rates),
            rates=rates,
        )
        log.info("dataflow stopped")  # a signal ends its input (flows/run.py GracefulStop), not an exception
        return
    if args.command == "ingest" and args.processes > 1:
        raise SystemExit(_ingest_processes(args, path))
    uvloop.run(_serve(args, path, config, rates, bounds, demo))


def _ingest_processes(args: argparse.Namespace, path: Path) -> int:
    """`ingest --processes N`: N ingest servers on one port, each its own Python (its own core);
    a worker that dies is started again. Their Prometheus counters go to files in one directory,
    and /metrics answers with the sum, whichever worker the scrape reaches."""
    metrics_dir = args.data_dir / "ingest-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}
    cmd = [*STOREPULSE, "ingest", "--config", str(path), "--data-dir", str(args.data_dir),
           "--redis", args.redis, "--host", args.host, "--http-port", str(args.http_port),
           "--max-body", str(args.max_body), "--rejected-total-bytes", str(args.rejected_total_bytes),
           "--rejected-store-bytes", str(args.rejected_store_bytes), "--rejected-keep-bytes", str(args.rejected_keep_bytes),
           "--body-timeout", str(args.body_timeout), "--keep-alive-timeout", str(args.keep_alive_timeout),
           "--header-timeout", str(args.header_timeout), "--max-header-bytes", str(args.max_header_bytes),
           "--max-connections", str(args.max_connections), "--reuse-port"]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    workers = [subprocess.Popen(cmd, env=env) for _ in range(args.processes)]
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(workers):
            if proc.poll() is not None and not stopping:
                log.error("ingest worker %s exited with %s; starting it again in 1 s", proc.pid, proc.returncode)
                time.sleep(1)
                workers[i] = subprocess.Popen(cmd, env=env)
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in workers:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.info("stopped")
    return 0


def _flows_command(args: argparse.Namespace, path: Path) -> list[str]:
    cmd = [*STOREPULSE, "flows", "--config", str(path), "--data-dir", str(args.data_dir),
           "--epoch-ms", str(args.epoch_ms), "--refund-horizon-days", str(args.refund_horizon_days)]
    if args.write_behind:
        cmd.append("--write-behind")
    if args.redis:
        cmd += ["--redis", args.redis]
    if args.flows_metrics_port:
        cmd += ["--metrics-port", str(args.flows_metrics_port), "--metrics-host", args.host]
    return cmd


async def _supervise(cmd: list[str], stop: asyncio.Event) -> None:
    """Keeps the dataflow process running; it resumes from its last snapshot after any exit."""
    while not stop.is_set():
        proc = subprocess.Popen(cmd)
        while proc.poll() is None and not stop.is_set():
            await asyncio.sleep(0.2)
        if stop.is_set():  # a terminal's Ctrl-C reaches the dataflow too: it may have stopped already
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return
        log.error("dataflow process exited with %s; restarting in 1 s", proc.returncode)
        await asyncio.sleep(1)


async def _serve(args: argparse.Namespace, path: Path, config: Config, rates: Rates | None,
                 bounds: RejectedLimits | None, demo: bool) -> None:
    from ingest.app import Ingest, ingest_routes
    from ingest.monitor import ConnectionMonitor
    from notifier.open import open_outbox
    from notifier.worker import Notifier
    from state.open import open_connection_stats, open_log, open_read_model, open_rejected
    from state.shares import open_shares
    from ws_gateway import api, segments, warm_start
    from ws_gateway.deliveries import DeliveriesSide
    from ws_gateway.hub import Hub
    from ws_gateway.live import start_ws_server
    from ws_gateway.preview_index import PreviewIndex
    from ws_gateway.sharing import ShareGuard

    stop = stop_on_signals()
    routes: list[BaseRoute] = []
    handlers: dict[Any, ExceptionHandler] = {}
    state: dict[str, object] = {}
    event_log = hub = ws = supervisor = monitor = outbox = delivering = deliveries = watching = previewing = None
    previews: PreviewIndex | None = None
    delivery_tuning = notifier.tuning(args) if args.command == "up" else None  # a bad --notifier-* stops here, before anything runs
    rejected = open_rejected(args.data_dir, args.redis, bounds)
    stats = open_connection_stats(args.data_dir, args.redis)
    if args.command in ("up", "ingest"):
        event_log = open_log(args.data_dir, args.redis)
        monitor = ConnectionMonitor(stats)
        monitor.start()
        routes += ingest_routes(Ingest(config, event_log, rejected, monitor, max_body=args.max_body,
                                       body_timeout=args.body_timeout))
    routes += demo_inbox_routes(config, demo)
    if args.command in ("up", "gateway"):
        model = open_read_model(args.data_dir, args.redis)
        hub = Hub(config, model, rates)
        await hub.start()
        # segment previews' columns: taken from the data dir's files (or built) in the background, then kept from the feed
        state["preview_index"] = previews = PreviewIndex(config, model, rates, args.data_dir)
        previewing = asyncio.create_task(previews.run(stop))
        api_limits, ws_limits = gateway_limits.from_args(args)
        shares = open_shares(args.data_dir, args.redis)
        ws = await start_ws_server(config, hub, args.host, args.ws_port, ws_limits, shares)
        routes += segments.routes + api.routes  # segments first: /segments is not one of the {what} lists
        handlers |= api.handlers
        state["read_side"] = api.ReadSide(config, model, rejected, stats, args.ws_port, rates, api_limits, shares=shares)
        outbox = open_outbox(args.data_dir, args.redis)
        state["deliveries"] = deliveries = DeliveriesSide(config, outbox)
        state["event_log"] = event_log = event_log or open_log(args.data_dir, args.redis)  # definitions go to the log
    if args.command == "up":
        supervisor = asyncio.create_task(_supervise(_flows_command(args, path), stop))
        assert outbox is not None  # opened with the read side above
        delivering = asyncio.create_task(Notifier(config, outbox, tuning=delivery_tuning).run(stop))
        watching = notifier.health_watch(args, config, outbox, stop)
    limits = HttpLimits(args.keep_alive_timeout, args.header_timeout, args.max_header_bytes, args.max_connections)
    app = build_app(routes, handlers, state)
    app.add_middleware(ShareGuard)  # a share token never writes, whatever the route (ws_gateway/sharing.py)
    server = http_server(app, args.host, args.http_port, limits)
    settle(SERVERS)
    sockets = [reuse_port_socket(args.host, args.http_port)] if getattr(args, "reuse_port", False) else None
    http_task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started and not http_task.done():
        await asyncio.sleep(0.01)
    if http_task.done():
        await http_task  # re-raises why it could not start (port in use, ...)
        raise SystemExit(f"HTTP server on {args.host}:{args.http_port} did not start")
    _announce(args, path, config, demo_credentials(path) if demo else None)
    # the lists' kept parts now, not at the first request (first those last saved in the data dir)
    warming = warm_start.start_side(state.get("read_side"), args.data_dir)
    simulator = demo_run.start(args, config.orgs["demo"], stop) if demo and "demo" in config.orgs else None
    await stop.wait()
    log.info("shutting down")
    if simulator is not None:  # before the server it posts to; a history cut short is sent again next time
        simulator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulator
    await asyncio.to_thread(warming.close)
    server.should_exit = True
    await http_task
    await asyncio.to_thread(_keep, previews)  # no preview runs now: its columns, for the next start
    if ws is not None:
        ws.close()
        await ws.wait_closed()
    if hub is not None:
        await hub.stop()
    if monitor is not None:
        await monitor.stop()
    if event_log is not None:
        await event_log.close()
    # each ends on `stop`: the dataflow, the notifier, its health watch, the preview columns
    for task in (supervisor, delivering, watching, previewing):
        if task is not None:
            await task
    if deliveries is not None:
        await deliveries.close()
    if outbox is not None:
        outbox.close()
    log.info("stopped")


def demo_inbox_routes(config: Config, demo: bool) -> list[BaseRoute]:
    """The demo's receiver of its `demo-inbox` channel; none for a real config (or a demo config written
    before it had one)."""
    org = config.orgs.get("demo") if demo else None
    channel = org.channels.get("demo-inbox") if org is not None else None
    if org is None or channel is None or channel.secret is None:
        return []
    return list(Inbox(channel.secret, lambda token: config.org_for_token(token) is org).routes())


def _keep(previews: PreviewIndex | None) -> None:
    """Saves the preview columns in the data dir for the next start (with the stamps they are complete at:
    ws_gateway/preview_keep.py; ~2 s at 1M customers). Blocking. The read side's kept parts need nothing
    here: saved in the background while it ran (ws_gateway/kept_file.py)."""
    if previews is not None:
        previews.save()


def _announce(args: argparse.Namespace, path: Path, config: Config, demo: tuple[str, dict[str, str]] | None) -> None:
    """Where everything is. Tokens and secrets are printed for the demo only (its own, written by
    demo_config): a real config's stay in the config file, never in a log."""
    base = f"http://{args.host}:{args.http_port}"
    where = 'redis ' + args.redis if args.redis else 'embedded SQLite in ' + str(args.data_dir)
    print(f"storepulse {args.command} ready: {base} (config {path}, {where})", flush=True)
    if args.command == "ingest":
        return
    for org in config.orgs.values():
        login = f"/#token={demo[0]}" if demo else f"/ (sign in with orgs.{org.id}.token of {path})"
        print(f"  org {org.id}: dashboard {base}{login}", flush=True)
        for store in org.stores.values():
            print(f"    {store_line(base, store, demo[1][store.id] if demo else None)}", flush=True)


def store_line(base: str, store: Store, secret: str | None = None) -> str:
    """Where a store sends us its events: its vendor's webhook URL, or the events API with its key.
    `secret` only for the demo: a real configuration's secrets are never printed."""
    from ingest.app import EVENTS_PATH

    if store.provider == "events":
        key = secret or "<its secret>"
        return f"store {store.id} (events API): POST {base}{EVENTS_PATH}  Authorization: Bearer {key}"
    shown = f"  secret {secret}" if secret else ""
    return f"store {store.id} ({store.provider}): POST {base}/webhooks/{store.provider}/{store.id}{shown}"
