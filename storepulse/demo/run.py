"""Sends the demo shops' traffic to our own ingest over HTTP, as the vendors would: first 90 days of
history (once per data directory: the anchor it was generated for is kept in `demo-simulator.json`,
so a restart neither repeats nor shifts it; an interrupted history is sent again and the log drops
what it already has), then live traffic every `interval` seconds until `stop` is set."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.config import Org, Store
from storepulse.demo import wire
from storepulse.demo.shop import DAY_MS, HOUR_MS, Happenings, SiteEvent, hour, tick

log = logging.getLogger("storepulse.demo")
STATE_FILE = "demo-simulator.json"
INTERVAL = 3.0
CONCURRENT = 8  # webhook requests in flight at once: the ingest server groups their appends


@dataclass(frozen=True, slots=True)
class Settings:
    seed: int = 11
    days: int = 90
    interval: float = 3.0  # seconds between live ticks (INTERVAL)


def _stores(org: Org) -> dict[str, Store]:
    """The first store of each provider in the demo organisation."""
    found: dict[str, Store] = {}
    for store in org.stores.values():
        found.setdefault(store.provider, store)
    return found


def posts(happened: Happenings, stores: dict[str, Store], now_s: int, until: int) -> tuple[list[wire.Post], list[wire.Post]]:
    """(events-API batches, webhook deliveries) for what happened before `until` (ms)."""
    site = [e for e in happened.site if e.time < until]
    batches = wire.site_batches(site, stores["events"]) if "events" in stores and site else []
    hooks: list[wire.Post] = []
    for order in sorted(happened.orders, key=lambda o: o.time):
        store = stores.get(order.provider)
        if store is None:
            continue
        if order.provider == "stripe":
            hooks += wire.stripe(order, store, now_s, until)
        elif order.provider == "woocommerce":
            hooks += wire.woocommerce(order, store, until)
        else:
            hooks += wire.shopify(order, store)
    if "woocommerce" in stores:
        hooks += [wire.woo_registration(r, stores["woocommerce"]) for r in happened.registrations]
    return batches, hooks


class Sender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.sent = 0
        self.refused = 0
        self._gate = asyncio.Semaphore(CONCURRENT)

    async def send(self, post: wire.Post) -> None:
        async with self._gate:
            for attempt in range(5):
                try:
                    r = await self.client.post(post.path, content=post.body, headers=post.headers)
                except httpx.HTTPError as exc:
                    log.warning("demo: %s failed (%s), retrying", post.path, exc)
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if r.status_code == 503:  # the log is busy: a webhook sender retries
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                self.sent += 1
                if r.status_code != 200:
                    self.refused += 1
                    log.warning("demo: %s answered %s: %s", post.path, r.status_code, r.text[:300])
                return
            self.refused += 1
            log.warning("demo: gave up on %s after 5 tries", post.path)

    async def send_all(self, batches: list[wire.Post], hooks: list[wire.Post]) -> None:
        for batch in batches:  # in time order: the site's events before the day's orders
            await self.send(batch)
        await asyncio.gather(*(self.send(p) for p in hooks))


def _anchor(data_dir: Path, settings: Settings, now_ms: int) -> tuple[int, bool]:
    """(the instant the history ends at, whether it was sent completely), kept across restarts."""
    path = data_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
        if state.get("seed") == settings.seed and state.get("days") == settings.days:
            return int(state["anchor_ms"]), bool(state.get("history_sent"))
    except (OSError, ValueError, KeyError):
        pass
    anchor = now_ms - now_ms % HOUR_MS  # whole hours, so the last hour of history is complete
    _save(path, settings, anchor, False)
    return anchor, False


def _save(path: Path, settings: Settings, anchor: int, sent: bool) -> None:
    path.write_text(json.dumps({"seed": settings.seed, "days": settings.days, "anchor_ms": anchor, "history_sent": sent}))


async def history(sender: Sender, stores: dict[str, Store], settings: Settings, anchor: int,
                  clock: Callable[[], float]) -> None:
    start = anchor - settings.days * DAY_MS
    later: list[SiteEvent] = []  # a day's site events after its end (a refund, a shopper back for a cart): the next day's
    for day in range(start, anchor, DAY_MS):
        end = min(day + DAY_MS, anchor)
        happened = Happenings(site=later)
        for h in range(day, end, HOUR_MS):
            one = hour(settings.seed, h)
            happened.site += one.site
            happened.orders += one.orders
            happened.registrations += one.registrations
        # sent in time order, day by day: an event hours ahead would make the next day's arrive late
        later = [e for e in happened.site if e.time >= end]
        happened.site = [e for e in happened.site if e.time < end]
        await sender.send_all(*posts(happened, stores, int(clock()), anchor))


async def simulate(base_url: str, org: Org, data_dir: Path, settings: Settings, stop: asyncio.Event,
                   clock: Callable[[], float] = time.time) -> None:
    """The simulator's whole life: history once, then a tick every `settings.interval` seconds."""
    stores = _stores(org)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the log
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        sender = Sender(client)
        anchor, sent = _anchor(data_dir, settings, int(clock() * 1000))
        if not sent:
            began = time.monotonic()
            await history(sender, stores, settings, anchor, clock)
            _save(data_dir / STATE_FILE, settings, anchor, True)
            log.info("demo: %d days of history sent in %.1f s (%d requests, %d refused)", settings.days,
                     time.monotonic() - began, sender.sent, sender.refused)
        number = 0
        span = int(settings.interval * 1000)
        while not stop.is_set():
            at = int(clock() * 1000)
            await sender.send_all(*posts(tick(settings.seed, at, span, number), stores, at // 1000, at + 1))
            number += 1
            try:
                await asyncio.wait_for(stop.wait(), settings.interval)
            except TimeoutError:
                pass


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.1 to 3600")
    return value


def _report(task: asyncio.Task[None]) -> None:
    """A simulator that fails says why in the log (storepulse itself goes on)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("demo: the shop simulator stopped", exc_info=task.exception())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-simulator", action="store_true",
                   help="with the demo config (no config file given), do not run the built-in shop simulator")
    p.add_argument("--simulator-interval", type=_interval, default=INTERVAL, metavar="SECONDS",
                   help="seconds between two ticks of the demo's live traffic")


def start(args: argparse.Namespace, org: Org, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The simulator as a task of `storepulse up`'s event loop, posting to its own HTTP port; None
    when --no-simulator."""
    if args.no_simulator:
        return None
    base = f"http://{args.host}:{args.http_port}"
    log.info("demo: shop simulator on (--no-simulator turns it off)")
    task = asyncio.create_task(simulate(base, org, args.data_dir, Settings(interval=args.simulator_interval), stop))
    task.add_done_callback(_report)
    return task
