"""The gateway's live view of every organisation: buckets kept current from the change feed.

It follows the feed first and snapshots second, so no change falls between the two; a change not
newer than what it has for that key is a replay and dropped. If the feed breaks (Redis restarts:
pub/sub may have lost messages), it follows it again and re-reads every snapshot. Subscribers hold
only the latest payload, so a slow dashboard never makes the hub buffer: it skips to the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from core.changes import DAY, Bucket, Change
from core.clock import ms_of
from core.config import Config, Org
from core.figures import MissingRate, dashboard_figures
from core.freshness import freshness
from core.money import EXPONENTS
from core.rates import Rates
from core.records import QuotaAlert
from core.segment_records import SegmentChange
from state.readmodel import ReadModel
from ws_gateway import metrics
from ws_gateway.lists import alert_json
from ws_gateway.segment_sent import SentChanges
from ws_gateway.segment_views import segment_message

log = logging.getLogger("storepulse.gateway")


class Subscriber:
    """One connection's pending messages, each already encoded: the hub encodes a message once for all
    its subscribers (5,000 dashboards cost one orjson.dumps, not 5,000)."""

    MAX_REPLIES = 16  # answers to the client's own messages not yet sent; more are dropped
    MAX_EVENTS = 1000  # segment changes not yet sent

    def __init__(self, write_now: Callable[[bytes], bool] | None = None, stores: frozenset[str] | None = None) -> None:
        self.stores = stores  # a share link's stores: figures of those alone (None: the whole organisation)
        self.since = 0  # the organisation's segment changes sent before it subscribed (ws_gateway/segment_sent.py)
        self.latest: bytes | None = None
        self.events: list[bytes] = []
        self.replies: list[bytes] = []
        self.ready = asyncio.Event()
        # Writes a message at once if the connection can take it (nothing queued, nothing being sent, its
        # buffer below the limit): ws_gateway/live.py. Waking one writer task per dashboard costs twice
        # the CPU of writing to it (bench/broadcast.py); the queue stays for whoever cannot take it now.
        self.write_now = write_now

    def offer(self, payload: bytes) -> None:
        """The newest figures: written at once if possible, else replacing figures not yet sent (the newest
        has them all)."""
        if (self.latest is None and not self.events and not self.replies and self.write_now is not None
                and self.write_now(payload)):
            return
        self.latest = payload
        self.ready.set()

    def event(self, message: bytes) -> None:
        """A message each of which the client gets (an alert, a segment change); past MAX_EVENTS unsent, the
        oldest are dropped: the client re-reads the segment's history (its versions show the gap)."""
        if len(self.events) >= self.MAX_EVENTS:
            del self.events[0]
        self.events.append(message)
        self.ready.set()

    def reply(self, message: dict[str, object]) -> None:
        """An answer to the client (a pong): sent with the next push, dropped while 16 wait unsent."""
        if len(self.replies) < self.MAX_REPLIES:
            self.replies.append(orjson.dumps(message))
            self.ready.set()

    async def next(self) -> list[bytes]:
        """Replies and events in order, then the newest figures (older figures are skipped)."""
        await self.ready.wait()
        self.ready.clear()
        out, self.replies, self.events = self.replies + self.events, [], []
        if self.latest is not None:
            out.append(self.latest)
            self.latest = None
        return out


@dataclass
class _OrgView:
    org: Org
    version: int = 0
    days: dict[str, Bucket] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    shown_day: str = ""
    alerted: set[str] = field(default_factory=set)
    caught_up_at: int | None = None  # the dataflow's latest report (core/freshness.py)
    stale: bool = True
    sent: SentChanges = field(init=False)  # segment changes sent, to retract those the dataflow withdraws

    def __post_init__(self) -> None:
        self.sent = SentChanges(self.org.allowed_lateness_ms)


class Hub:
    def __init__(self, config: Config, model: ReadModel, rates: Rates | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self._model = model
        self._rates = rates
        self._now = now or (lambda: datetime.now(UTC))
        self._views = {org.id: _OrgView(org) for org in config.orgs.values()}
        for org_id in self._views:  # every series from the start: stale (and never caught up) until told otherwise
            metrics.STALE.labels(org=org_id).set(1)
            metrics.CAUGHT_UP.labels(org=org_id).set(0)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    async def start(self) -> None:
        feed = await self._live_feed()
        self._tasks = [
            asyncio.create_task(self._follow(feed)),
            asyncio.create_task(self._publish()),
            asyncio.create_task(self._tick()),
        ]
        self.started.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await t

    def subscribe(self, org_id: str, write_now: Callable[[bytes], bool] | None = None,
                  stores: frozenset[str] | None = None) -> tuple[Subscriber, dict[str, object]]:
        view = self._views[org_id]
        sub = Subscriber(write_now, stores)
        sub.since = view.sent.seq
        view.subscribers.add(sub)
        metrics.CLIENTS.inc()
        return sub, self.payload(org_id, "snapshot", stores)

    def unsubscribe(self, org_id: str, sub: Subscriber) -> None:
        self._views[org_id].subscribers.discard(sub)
        metrics.CLIENTS.dec()

    def payload(self, org_id: str, kind: str, stores: frozenset[str] | None = None) -> dict[str, object]:
        """The dashboard's figures; with `stores` (a share link's), of those stores alone: their total,
        and each of them."""
        view = self._views[org_id]
        days = [b for b in view.days.values() if stores is None or b.store in stores]
        now = self._now()
        view.shown_day = now.astimezone(view.org.tz).date().isoformat()
        base: dict[str, object] = {"type": kind, "org": org_id, "version": view.version, "currency": view.org.currency,
                                   "exponent": EXPONENTS[view.org.currency],
                                   "freshness": freshness(view.caught_up_at, ms_of(now)).to_json()}
        try:
            base["figures"] = dashboard_figures(
                days, today=now.astimezone(view.org.tz).date(), currency=view.org.currency,
                stores=[s for s in view.org.stores if stores is None or s in stores], rates=self._rates,
            )
        except MissingRate as exc:
            base["error"] = str(exc)
        return base

    async def _resnapshot(self, org_id: str) -> None:
        version, days = await asyncio.to_thread(self._model.snapshot, org_id, DAY)
        view = self._views[org_id]
        view.version = version
        view.days = {d.key: d for d in days}
        alerts = await asyncio.to_thread(self._model.records, org_id, QuotaAlert)
        view.alerted = {a.key for a in alerts}
        self._mark(org_id)

    async def _live_feed(self) -> AsyncIterator[list[Change] | None]:
        feed = self._model.feed()
        await anext(feed)  # the feed is live: snapshots read from now on miss nothing
        for org_id in self._views:
            await self._resnapshot(org_id)
        return feed

    async def _follow(self, feed: AsyncIterator[list[Change] | None]) -> None:
        while True:
            try:
                async for batch in feed:
                    if batch:
                        self._apply(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change feed broke; following it again and re-reading snapshots")
            while True:
                await asyncio.sleep(1)
                try:
                    feed = await self._live_feed()
                    metrics.RESNAPSHOTS.inc()
                    break
                except Exception as exc:  # still down: keep serving what we have
                    log.warning("change feed still unavailable: %s", exc)

    def _apply(self, batch: list[Change]) -> None:
        """One write's changes of one organisation, applied whole: one push shows all of a version."""
        view = self._views.get(batch[0].org)
        if view is None:
            return  # an organisation we do not serve
        shown = False
        for c in batch:
            if isinstance(c, Bucket):
                if c.grain != DAY:
                    continue  # hours are for series, not the dashboard
                held = view.days.get(c.key)
                if held is not None and c.version <= held.version:
                    continue  # a replay of what we have
                view.days[c.key] = c
            elif isinstance(c.value, QuotaAlert):
                if c.key in view.alerted:
                    continue  # a replay after a dataflow restart: said once already
                view.alerted.add(c.key)
                alert = orjson.dumps({"type": "alert", "org": c.org, "version": c.version, "quota": alert_json(c.value)})
                for sub in view.subscribers:  # an alert is an event of its own, not a figure to coalesce
                    if sub.stores is None:  # the quota is the whole organisation's: not for a link of some stores
                        sub.event(alert)
            elif isinstance(c.value, SegmentChange):  # an entry or exit: an event of its own, each one sent
                self._segment_change(view, c.key, c.value, c.version)
                continue
            else:
                continue  # records the dashboard does not show (orders, carts, ...)
            view.version = max(view.version, c.version)
            shown = True
        if shown:
            self._mark(view.org.id)

    def _segment_change(self, view: _OrgView, key: str, v: SegmentChange, version: int) -> None:
        """An entry or exit to every subscriber of the whole organisation (segments span its stores: not for
        a share link of some); a withdrawn one, as a retraction, to those it was sent to, if it was."""
        if v.superseded:
            seq = view.sent.withdrawn(key)
            if seq is None:
                return  # never sent by this gateway: nobody counted it
            message = orjson.dumps(segment_message(v, version, withdrawn=True))
            for sub in view.subscribers:
                if sub.stores is None and sub.since < seq:
                    sub.event(message)
            return
        view.sent.sent(key, v.at)
        message = orjson.dumps(segment_message(v, version))
        for sub in view.subscribers:
            if sub.stores is None:
                sub.event(message)

    def _mark(self, org_id: str) -> None:
        self._dirty.add(org_id)
        self._wake.set()

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for org_id in dirty:
                view = self._views[org_id]
                if not view.subscribers:
                    continue
                # encoded once per set of stores (the whole organisation, or a share link's), for all its subscribers
                payloads: dict[frozenset[str] | None, bytes] = {}
                for sub in view.subscribers:
                    if sub.stores not in payloads:
                        payloads[sub.stores] = orjson.dumps(self.payload(org_id, "figures", sub.stores))
                    sub.offer(payloads[sub.stores])
                metrics.PUSHES.inc(len(view.subscribers))
            await asyncio.sleep(0)

    async def _tick(self) -> None:
        """Once a second: at local midnight "today" changes with no event, and figures turn stale (or
        live again) with no event either: push the new figures."""
        while True:
            await asyncio.sleep(1)
            try:
                reports = await asyncio.to_thread(lambda: {o: self._model.caught_up_at(o) for o in self._views})
            except Exception as exc:  # the read model is down: the figures cannot be called live
                log.warning("cannot read the dataflow's reports: %s", exc)
                reports = {o: None for o in self._views}
            now = self._now()
            now_ms = ms_of(now)
            for org_id, view in self._views.items():
                view.caught_up_at = reports[org_id]
                fresh = freshness(view.caught_up_at, now_ms)
                metrics.STALE.labels(org=org_id).set(fresh.stale)
                if view.caught_up_at is not None:
                    metrics.CAUGHT_UP.labels(org=org_id).set(view.caught_up_at / 1000)
                if fresh.stale != view.stale:
                    view.stale = fresh.stale
                    self._mark(org_id)
                if view.subscribers and now.astimezone(view.org.tz).date().isoformat() != view.shown_day:
                    self._mark(org_id)
