"""The gateway's preview columns (ws_gateway/preview_columns.py) for every organisation: built once
in the background from the read model, then kept current from its change feed.

It follows the feed first and reads the records second (as ws_gateway/hub.py), so no record falls
between the two: a record both bring is taken once (the newer version wins). The feed's records are
held until a preview or the follower (every HOLD_MOST of them) moves them into the columns, so a
preview sees every record the feed delivered before it. Until an organisation's columns are built
(~75 s at 1M customers, bench/segment_preview.py) and after the feed breaks (until rebuilt), `held`
answers None and the route answers from the records (ws_gateway/segment_preview.py): slower, the
same answer.

With a data directory, the columns saved at the last shutdown (ws_gateway/preview_keep.py) are taken
instead of reading every record, and only the days whose stamp changed since they were complete are
caught up (`catch_up`); `save` writes them at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from core.changes import Change, Record
from core.config import Config
from core.rates import Rates
from core.records import Cart, Customer, Order, RecordKind, Value
from core.rules import Context
from core.rules.tree import Rule
from state.day_stamps import DayStamped, DayVersioned, Identified
from state.readmodel import ReadModel
from ws_gateway import kept_file, metrics, preview_keep
from ws_gateway.preview_columns import PreviewColumns
from ws_gateway.preview_eval import Unsupported, preview_columns
from ws_gateway.preview_keep import KeptColumns, Stamps

log = logging.getLogger("storepulse.gateway")

KINDS = frozenset({RecordKind.CUSTOMER, RecordKind.ORDER, RecordKind.CART})
HOLD_MOST = 20_000  # feed records held before the follower moves them into the columns
RERANK_AFTER = 50_000  # customers appended after the ranked ones before the follower re-sorts them
# days of records read at a time: the fewer decoded at once, the less the allocator keeps after the
# build (at 100k customers the RSS grows by 101 MB reading 1 day at a time, 264 MB reading 30; same CPU)
CHUNK_DAYS = 1


class HeldColumns:
    """One organisation's columns, the feed's records not yet in them, and the lock both take."""

    def __init__(self, ctx: Context) -> None:
        self.columns = PreviewColumns(ctx)  # the organisation's zone, currency and the gateway's rates
        self.pending: list[Record[Value]] = []
        self.lock = threading.Lock()  # the columns: a preview and a settle take it (a build, for seconds)
        self._pending_lock = threading.Lock()  # the held records only: the feed's task never waits for a build
        self.settling = False
        self.broken = False  # a record could not be taken: the columns no longer answer
        self.cache: dict[Any, Any] = {}  # per-customer aggregates while the columns stand (preview_eval)
        self.built_seconds: float | None = None
        # the read model's day stamps read before the records the columns were built or caught up from
        # (every write before them is in the columns: ws_gateway/preview_keep.py); None: not stamped
        self.stamps: Stamps | None = None

    def take(self, records: list[Record[Value]]) -> None:
        """Records from the feed (any thread)."""
        with self._pending_lock:
            self.pending.extend(records)

    def settle(self, rerank: bool = False) -> None:
        """Moves the held records into the columns (and, with `rerank`, re-sorts the customers once
        many were appended). Blocking: call from a worker thread."""
        try:
            with self.lock:
                self._settle()
                if rerank and self.columns.customers.n - self.columns.ranked > RERANK_AFTER:
                    self.columns.rerank()
        except Unsupported:
            pass  # broken: said in the log
        finally:
            self.settling = False

    def _settle(self) -> None:
        if self.broken:
            raise Unsupported("the preview columns are broken (see the log): previews read the records")
        with self._pending_lock:
            records, self.pending = self.pending, []
        try:
            self.columns.apply(records)
        except Exception as exc:  # records are not lost: the columns stop answering, the records' path does
            self.broken = True
            log.exception("preview columns: a record could not be taken; previews read the records from now on")
            raise Unsupported(str(exc)) from exc

    def preview(self, rule: Rule, now: int, ctx: Context, buyers_only: bool) -> tuple[int, list[str]]:
        """preview_eval.preview_columns over the columns with every record the feed delivered so far
        (raises preview_eval.Unsupported for what the columns cannot answer). Blocking."""
        with self.lock:
            self._settle()
            return preview_columns(rule, self.columns, now, ctx, buyers_only, self.cache)


class PreviewIndex:
    """The preview columns of the configured organisations; `run` builds them in the background."""

    def __init__(self, config: Config, model: ReadModel, rates: Rates | None = None,
                 data_dir: Path | None = None) -> None:
        """With `data_dir`, the columns are taken from (and `save` writes them to) its files, marked with
        this model's identity and the code as it is now (call it at start); none for a model without
        day stamps or an identity."""
        self._config, self._model, self._rates = config, model, rates
        self._ready: dict[str, HeldColumns] = {}
        self._kept: dict[str, KeptColumns] = {}
        if data_dir is not None and isinstance(model, DayStamped) and isinstance(model, Identified):
            identity, code = model.identity(), kept_file.code_digest()
            self._kept = {org_id: preview_keep.at(data_dir, identity, code, org, rates)
                          for org_id, org in config.orgs.items()}

    def held(self, org: str) -> HeldColumns | None:
        """The organisation's columns once built and following the feed; None before (or after the feed broke)."""
        held = self._ready.get(org)
        return None if held is None or held.broken else held

    def save(self) -> None:
        """Writes each organisation's columns (built and following the feed) with the stamps they are
        complete at, for the next start. Blocking; at shutdown, once no preview runs. The feed's records
        held are moved in first (they are in the read model: the columns take them as a preview would)."""
        for org, held in list(self._ready.items()):
            kept = self._kept.get(org)
            if kept is None or held.stamps is None:
                continue
            with held.lock:
                try:
                    held._settle()
                except Unsupported:
                    continue  # broken: said in the log; a file saved earlier stays right
                preview_keep.timed_save(kept, held.columns, held.stamps)

    async def run(self, stop: asyncio.Event) -> None:
        """Builds the columns and follows the feed until `stop` is set."""
        task = asyncio.create_task(self._run())
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("preview columns: the change feed broke; following it again and rebuilding")
            self._ready.clear()
            await asyncio.sleep(1)

    async def _follow(self) -> None:
        feed: AsyncIterator[list[Change] | None] = self._model.feed()
        try:
            await anext(feed)  # live: records read from now on miss nothing
            building = {org_id: HeldColumns(Context(org.timezone, org.currency, self._rates))
                        for org_id, org in self._config.orgs.items()}
            reader = asyncio.create_task(self._build_all(building))
            try:
                async for batch in feed:
                    if batch:
                        self._take(building, batch)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            close = getattr(feed, "aclose", None)
            if close is not None:
                await close()

    def _take(self, building: dict[str, HeldColumns], batch: list[Change]) -> None:
        held = building.get(batch[0].org)
        if held is None:
            return
        records = [c for c in batch if isinstance(c, Record) and c.kind in KINDS]
        if not records:
            return
        held.take(records)
        if batch[0].org in self._ready and len(held.pending) >= HOLD_MOST and not held.settling:
            held.settling = True
            asyncio.get_running_loop().run_in_executor(None, held.settle, True)

    async def _build_all(self, building: dict[str, HeldColumns]) -> None:
        for org_id, held in building.items():
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._build, org_id, held)
            except Exception:  # this organisation's previews stay on the records' path; the others go on
                log.exception("preview columns of %s could not be built: its previews read the records", org_id)
                continue
            held.built_seconds = time.perf_counter() - started
            metrics.PREVIEW_BUILD_SECONDS.labels(org=org_id).set(held.built_seconds)
            self._ready[org_id] = held

    def _build(self, org: str, held: HeldColumns) -> None:
        """The columns from the file the last shutdown saved, caught up; else from every record."""
        started = time.perf_counter()
        kept = self._kept.get(org)
        if kept is not None and (taken := kept.load(held.columns.ctx)) is not None:
            with held.lock:
                held.columns = taken[0]
            loaded = time.perf_counter() - started
            days, records = catch_up(self._model, org, held, taken[1])
            held.settle(rerank=True)
            log.info("preview columns of %s taken from %s in %.1f s and caught up in %.1f s (%d records of %d "
                     "days changed since; %d customers)", org, kept.path, loaded,
                     time.perf_counter() - started - loaded, records, days, held.columns.customers.n)
            return
        load(self._model, org, held)
        log.info("preview columns of %s built in %.1f s (%d customers)", org, time.perf_counter() - started,
                 held.columns.customers.n)


def load(model: ReadModel, org: str, held: HeldColumns) -> None:
    """Reads the organisation's customer, order and cart records into the columns, then ranks the
    customers by key; `held.stamps` becomes the day stamps read before the records (where the model
    stamps days). Blocking: seconds at 100k customers, ~75 s at 1M (bench/segment_preview.py)."""
    cols = held.columns
    stamps = _stamps(model, org)
    for kind in (Customer, Order, Cart):
        for records in _chunks(model, org, kind, None if stamps is None else sorted(stamps[kind.KIND])):
            with held.lock:
                cols.apply(records)
    with held.lock:
        cols.rerank()
        held.stamps = stamps
    held.settle()


def catch_up(model: ReadModel, org: str, held: HeldColumns, saved: Stamps) -> tuple[int, int]:
    """Brings columns complete at the stamps `saved` (ws_gateway/preview_keep.py) to the read model as it
    is: reads the stamps first, then, of each day whose stamp differs from the saved one (or is new), the
    records newer than the columns' rows (by their versions, where the model lists a day's versions;
    else the day's records whole); `held.stamps` becomes the stamps read. A record written meanwhile is
    the feed's (subscribed before). Returns (days, records) read. Blocking; does not rerank."""
    stamps = _stamps(model, org)
    if stamps is None:
        raise TypeError("only a read model that stamps days can catch columns up")
    days = taken = 0
    for kind in (Customer, Order, Cart):
        was = saved.get(kind.KIND, {})
        for day in sorted(d for d, stamp in stamps[kind.KIND].items() if was.get(d) != stamp):
            days += 1
            if isinstance(model, DayVersioned):
                versions = model.day_versions(org, kind, day)
                with held.lock:
                    stale = held.columns.stale(kind, versions)
                if not stale:
                    continue
                # many stale (a day written while the gateway was down): one read of the day, not by key
                records = (model.records(org, kind, day, day) if 2 * len(stale) > len(versions)
                           else model.records_by_key(org, kind, stale))
            else:
                records = model.records(org, kind, day, day)
            taken += len(records)
            with held.lock:
                held.columns.apply(records)
    with held.lock:
        held.stamps = stamps
    return days, taken


def _stamps(model: ReadModel, org: str) -> Stamps | None:
    """Per kind the columns take, the model's day stamps (None: the model stamps no day)."""
    if not isinstance(model, DayStamped):
        return None
    return {kind.KIND: model.day_stamps(org, kind) for kind in (Customer, Order, Cart)}


def _chunks(model: ReadModel, org: str, kind: type[Value], days: list[str] | None) -> Iterator[list[Record[Value]]]:
    """The organisation's records of a kind, CHUNK_DAYS of `days` at a time (the decoded records are the
    build's peak of memory, and the model's lock is held per read); all at once without `days` (a
    model without stamps). A day added since `days` were listed is the feed's."""
    if days is None:
        yield model.records(org, kind)
        return
    for i in range(0, len(days), CHUNK_DAYS):
        yield model.records(org, kind, days[i], days[min(i + CHUNK_DAYS, len(days)) - 1])
