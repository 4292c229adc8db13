"""The gateway's live view of every organisation: buckets kept current from the change feed.

It follows the feed first and snapshots second, so no change falls between the two; a change older
than what it has is a replay and dropped, and a gap in an organisation's versions (a missed pub/sub
message) makes it re-read that organisation's snapshot. Subscribers hold only the latest payload,
so a slow dashboard never makes the hub buffer: it just skips to the newest figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core.config import Config, Org
from core.figures import DAY, Bucket, MissingRate, Record, dashboard_figures
from core.rates import Rates
from state.readmodel import ReadModel
from ws_gateway import metrics

log = logging.getLogger("storepulse.gateway")


class Subscriber:
    def __init__(self) -> None:
        self.latest: dict[str, object] | None = None
        self.alerts: list[dict[str, object]] = []
        self.ready = asyncio.Event()

    def offer(self, payload: dict[str, object]) -> None:
        self.latest = payload
        self.ready.set()

    async def next(self) -> list[dict[str, object]]:
        """Alerts in order, then the newest figures (older figures are skipped: the newest has all)."""
        await self.ready.wait()
        self.ready.clear()
        out, self.alerts = self.alerts, []
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


class Hub:
    def __init__(self, config: Config, model: ReadModel, rates: Rates | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self._model = model
        self._rates = rates
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._views = {org.id: _OrgView(org) for org in config.orgs.values()}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    async def start(self) -> None:
        feed = self._model.feed()
        await anext(feed)  # the feed is live: snapshots read from now on miss nothing
        for org_id in self._views:
            await self._resnapshot(org_id)
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

    def subscribe(self, org_id: str) -> tuple[Subscriber, dict[str, object]]:
        view = self._views[org_id]
        sub = Subscriber()
        view.subscribers.add(sub)
        metrics.CLIENTS.inc()
        return sub, self.payload(org_id, "snapshot")

    def unsubscribe(self, org_id: str, sub: Subscriber) -> None:
        self._views[org_id].subscribers.discard(sub)
        metrics.CLIENTS.dec()

    def payload(self, org_id: str, kind: str) -> dict[str, object]:
        view = self._views[org_id]
        now = self._now()
        view.shown_day = now.astimezone(view.org.tz).date().isoformat()
        base: dict[str, object] = {"type": kind, "org": org_id, "version": view.version, "currency": view.org.currency}
        try:
            base["figures"] = dashboard_figures(
                list(view.days.values()), today=now.astimezone(view.org.tz).date(), currency=view.org.currency,
                stores=view.org.stores, rates=self._rates,
            )
        except MissingRate as exc:
            base["error"] = str(exc)
        return base

    async def _resnapshot(self, org_id: str) -> None:
        version, days = await asyncio.to_thread(self._model.snapshot, org_id)
        view = self._views[org_id]
        view.version = version
        view.days = {d.key: d for d in days if d.grain == DAY}  # hours are for series, not the dashboard
        self._mark(org_id)

    async def _follow(self, feed: AsyncIterator[Bucket | Record | None]) -> None:
        async for change in feed:
            if change is not None:
                await self._apply(change)

    async def _apply(self, c: Bucket | Record) -> None:
        view = self._views.get(c.org)
        if view is None or c.version <= view.version:
            return  # an organisation we do not serve, or a change already in our snapshot
        if c.version > view.version + 1:
            metrics.RESNAPSHOTS.inc()
            await self._resnapshot(c.org)  # missed something: the snapshot has it
            return
        view.version = c.version
        if isinstance(c, Record) and c.kind == "quota_alert":
            for sub in view.subscribers:  # an alert is an event of its own, not a figure to coalesce
                sub.alerts.append({"type": "alert", "org": c.org, "version": c.version, "quota": c.value})
                sub.ready.set()
        if isinstance(c, Bucket) and c.grain == DAY:
            view.days[c.key] = c
        self._mark(c.org)

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
                payload = self.payload(org_id, "figures")
                for sub in view.subscribers:
                    sub.offer(payload)
                metrics.PUSHES.inc(len(view.subscribers))
            await asyncio.sleep(0)

    async def _tick(self) -> None:
        """At local midnight "today" changes with no event: push the new figures."""
        while True:
            await asyncio.sleep(1)
            now = self._now()
            for org_id, view in self._views.items():
                if view.subscribers and now.astimezone(view.org.tz).date().isoformat() != view.shown_day:
                    self._mark(org_id)
