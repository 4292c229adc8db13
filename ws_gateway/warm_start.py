"""The read side's kept parts computed at start, in a background thread, so that the first dashboard
request after a restart does not pay for them (at 1M orders and 1M customers: 16 s for the 90-day
overview's best customers, seconds for the order lists).

What is warmed, per organisation, in its presentation currency over all its stores (what the dashboard
asks first): the best customers of today, 7, 30 and 90 days and all time (the order-day and
profile-day parts and each period's kept sums: ws_gateway/customer_rank.py), the order lists' parts
of 90 days and the sums of 90, 7 and 30 days (the same parts: list_parts.OrdersMerge), the carts' of 90
days and the quota's; then what the overview compares each named period with, the period of as many days just before it (its KPIs' changes):
the best customers of those of 7, 30 and 90 days and the carts of the 90 days before the 90 (the first
choice of 30 days after a start took 1.8 s for the 30 days before alone, at 1M orders). Last, so that
when the day cache's budget runs short it is those, not the periods themselves, that go. A request
arriving while its part is being warmed waits for that part (the same lock), not longer than
computing it itself. Only a read model with day stamps keeps parts: SQLite's and Redis's both have them
(branch redisday), so both are warmed.

With a data directory, what the last run saved there is taken first (ws_gateway/kept_file.py: ~5 s at 1M
instead of ~40-60 s of computing; requests wait for it meanwhile), so the steps compute only what was
written since; once warmed, the same thread saves what is kept, in a forked child, then at most every
SAVE_SECONDS while parts change.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from core.config import Org
from core.figures import resolve_period
from core.rates import Rates
from state.day_stamps import DayStamped
from state.readmodel import ReadModel
from ws_gateway import cached_lists, kept_file, metrics
from ws_gateway.api import ReadSide
from ws_gateway.day_cache import DayCache
from ws_gateway.kept_file import KeptFile

log = logging.getLogger(__name__)

CUSTOMER_PERIODS = ("today", "7d", "30d", "90d", "all")
# Saved for the next start at most this often, in the background (ws_gateway/kept_file.py). A file an hour old is
# nearly as good as a fresh one: a restart computes again only the days written since (in a live shop today, whose
# parts are updated from the writes anyway), and each save costs ~20 s of a core and up to ~2.9 GB of copied pages
# for that time at 1M customers (the child's private pages, measured).
SAVE_SECONDS = 3600.0
LIST_PERIOD = "90d"  # the longest named period: the shorter ones are its last days
SHORTER_LISTS = ("7d", "30d")  # their order lists' sums (list_parts.OrdersMerge: 10-50 ms each at 1M orders)
COMPARED_PERIODS = ("7d", "30d", "90d")  # the overview's period choices that show a change against the one before


def previous_span(first: str, last: str) -> tuple[str, str]:
    """The days just before [first, last], as many (the dashboard's previousSpan, period.js)."""
    lo, hi = date.fromisoformat(first), date.fromisoformat(last)
    n = (hi - lo).days + 1
    return (lo - timedelta(days=n)).isoformat(), (lo - timedelta(days=1)).isoformat()


@dataclass
class Warming:
    """The warming thread; `took` lists (what, seconds) as each step ends. Once warmed, the same thread
    saves what the read side keeps for the next start (with a `kept` file), in the background."""

    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    warmed: threading.Event = field(default_factory=threading.Event)
    took: list[tuple[str, float]] = field(default_factory=list)
    cache: DayCache | None = None
    kept: KeptFile | None = None  # where the parts are taken from at start and saved to while running
    saves: int = 0  # background saves completed

    def wait(self, timeout: float | None = None) -> bool:
        """True once every step ran (or it was stopped)."""
        if self.thread is None:
            return True
        self.warmed.wait(timeout)
        return self.warmed.is_set() or not self.thread.is_alive()

    def close(self) -> None:
        """Stops after the step under way (a step is not interrupted: at most one part's computation); a
        background save under way finishes its file alone."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def keep_saving(self, already: int) -> None:
        """Saves what the read side keeps (ws_gateway/kept_file.py) now and every SAVE_SECONDS, in a forked
        child, whenever parts were kept or replaced since (`already`: the count when the last file was
        taken); until stopped. A failed save is said in the log and tried again next time."""
        if self.kept is None or self.cache is None:
            return
        saved = already
        while not self.stop.is_set():
            if self.cache.changes != saved:
                saved = self.cache.changes
                self._save(self.cache, self.kept)
            self.stop.wait(SAVE_SECONDS)

    def _save(self, cache: DayCache, kept: KeptFile) -> None:
        began = time.perf_counter()
        try:
            pid = kept_file.save_in_background(cache, kept)
        except OSError:
            log.exception("saving the kept parts to %s: no child", kept.path)
            return
        held = time.perf_counter() - began
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (a SIGCHLD handler): its outcome is unknown here
                log.info("kept parts: the saving child %d was reaped elsewhere; %s is as it left it", pid, kept.path)
                metrics.KEPT_SAVES.labels(outcome="unknown").inc()
                return
            if done:
                break
            if self.stop.wait(0.1):
                return  # shutting down: the child finishes the file alone
        if os.waitstatus_to_exitcode(status) != 0:
            log.error("saving the kept parts to %s failed (exit status %d)", kept.path, os.waitstatus_to_exitcode(status))
            metrics.KEPT_SAVES.labels(outcome="failed").inc()
            return
        self.saves += 1
        took, size = time.perf_counter() - began, kept.path.stat().st_size
        metrics.KEPT_SAVES.labels(outcome="saved").inc()
        metrics.KEPT_SAVE_SECONDS.set(took)
        metrics.KEPT_BYTES.set(size)
        metrics.KEPT_SAVED.set(time.time())
        metrics.KEPT_HELD_SECONDS.set(held)
        log.info("kept parts saved to %s (%.0f MB) in %.1f s in the background (requests held %.0f ms)", kept.path,
                 size / 1e6, took, held * 1000)


def steps(cache: DayCache, model: ReadModel, orgs: Iterable[Org], rates: Rates | None,
          now: Callable[[], datetime]) -> list[tuple[str, Callable[[], object]]]:
    """(what, compute) for each thing warmed, in the order the dashboard's overview needs them."""
    out: list[tuple[str, Callable[[], object]]] = []
    for org in orgs:
        today = now().astimezone(org.tz).date()
        for period in CUSTOMER_PERIODS:
            first, last = resolve_period(period, None, None, today)
            out.append((f"{org.id} customers {period}", functools.partial(
                cached_lists.best_customers, cache, model, org.id, first, last, tz=org.tz, members=None,
                sort="revenue", limit=1, currency=org.currency, rates=rates, store=None)))
        for period in (LIST_PERIOD, *SHORTER_LISTS):  # 90 days' parts, then the shorter periods' kept sums of them
            start, end = resolve_period(period, None, None, today)
            out.append((f"{org.id} orders {period}", functools.partial(
                cached_lists.order_list, cache, model, org.id, start, end, "orders", members=None, sort="latest",
                limit=20, tz=org.tz, currency=org.currency, rates=rates, store=None)))
        first, last = resolve_period(LIST_PERIOD, None, None, today)
        out.append((f"{org.id} carts {LIST_PERIOD}", functools.partial(
            cached_lists.carts, cache, model, org.id, first, last, limit=20, currency=org.currency, rates=rates,
            store=None)))
        out.append((f"{org.id} quota", functools.partial(
            cached_lists.quota_count, cache, model, org.id, int(now().timestamp() * 1000), org.tz)))
    for org in orgs:  # what the overview compares with: after every organisation's own periods
        today = now().astimezone(org.tz).date()
        for period in COMPARED_PERIODS:
            first, last = previous_span(*resolve_period(period, None, None, today))
            out.append((f"{org.id} customers before {period}", functools.partial(
                cached_lists.best_customers, cache, model, org.id, first, last, tz=org.tz, members=None,
                sort="revenue", limit=1, currency=org.currency, rates=rates, store=None)))
        first, last = previous_span(*resolve_period(LIST_PERIOD, None, None, today))
        out.append((f"{org.id} carts before {LIST_PERIOD}", functools.partial(
            cached_lists.carts, cache, model, org.id, first, last, limit=1, currency=org.currency, rates=rates,
            store=None)))
    return out


def start(cache: DayCache, model: ReadModel, orgs: Iterable[Org], rates: Rates | None,
          now: Callable[[], datetime], kept: KeptFile | None = None) -> Warming:
    """Runs `steps` in a daemon thread (none with a model without day stamps: nothing would be kept),
    after taking what was last saved in `kept` (the steps then compute only the days written since, and
    what it did not hold); then saves to `kept` in the background (Warming.keep_saving)."""
    warming = Warming(cache=cache, kept=kept)
    if not isinstance(model, DayStamped):
        return warming
    todo = steps(cache, model, list(orgs), rates, now)

    def run() -> None:
        began = time.perf_counter()
        loaded = -1  # the parts' count of changes once the file is in (-1: none taken: save once warmed)
        if kept is not None:
            try:
                taking = time.perf_counter()
                if kept.load(cache) is not None:
                    loaded = cache.changes
                    metrics.KEPT_LOAD_SECONDS.set(time.perf_counter() - taking)
            except Exception:  # an unreadable file: computed as if there were none
                log.exception("taking the kept parts from %s failed", kept.path)
            finally:
                cache.release()
        for what, compute in todo:
            if warming.stop.is_set():
                warming.warmed.set()
                return
            t = time.perf_counter()
            try:
                compute()
            except Exception:  # a request computes it again and answers with the error itself
                log.exception("warming %s failed", what)
                continue
            warming.took.append((what, time.perf_counter() - t))
            log.info("warmed %s in %.1f s", what, warming.took[-1][1])
        # What was warmed stays (millions of objects at 1M orders): out of the collector's scans from now
        # on, as storepulse.gc_policy.settle does with what a process builds at start. Else a full
        # collection, when one comes, walks it all during some request (1.4 s at bench/read_api.py's scale).
        gc.freeze()
        log.info("warming done in %.1f s", time.perf_counter() - began)
        warming.warmed.set()
        warming.keep_saving(loaded)

    if kept is not None:
        cache.hold()  # from now: a request arriving before the thread took the file waits for it too
    warming.thread = threading.Thread(target=run, name="warm-read-side", daemon=True)
    warming.thread.start()
    return warming


def start_side(side: object, data_dir: Path | None = None) -> Warming:
    """`start` for the gateway's read side (`storepulse up|gateway`; None: no read side, nothing warmed),
    with its kept parts saved in `data_dir` (None: none taken, none saved)."""
    if not isinstance(side, ReadSide):
        return Warming()
    kept = kept_file.at(data_dir, side.model, side.config, side.rates) if data_dir is not None else None
    return start(side.day_cache, side.model, side.config.orgs.values(), side.rates, side.now, kept)
