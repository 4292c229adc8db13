"""Backfill sync: page through a shop's history, normalise, append, checkpoint. Vendor-neutral.

A vendor module (ingest/sync_stripe.py, ingest/sync_woo.py) supplies `Resource`s; each fetches one
page at a cursor (its only I/O) and turns it into canonical events with the same object-level
normalisers as the webhooks, so a fact seen both ways gets one id and the log keeps one event.

`run_sync` takes the resources in order and, for every page: appends its events, THEN saves the
checkpoint (`save_sync`). An object that cannot be normalised, or whose event is outside
core.limits' ranges, is skipped and counted (`skipped`, `last_skip`); the sync goes on. A crash
loses at most the page in flight, which the next run fetches again; appending it twice is harmless
because the log drops duplicate ids (within 30 days of the first append; a copy appended later
changes no figure: docs/operations.md, "Duplicates").

The checkpoint is the sync state the read API shows under `connections[].sync`:

    {"provider": "stripe", "status": "running" | "done" | "failed", "since": ISO | null,
     "resource": "charges",            # the resource in progress (the last one once done)
     "cursor": "ch_123" | 4 | null,    # where its next page starts (opaque, vendor-defined)
     "done": ["customers", ...],       # resources finished
     "fetched": N, "events": N, "appended": N, "skipped": N, "pages": N,
     "resources": {"charges": {"fetched": N, "events": N, "appended": N, "total": N | null}},
     "started_at": ISO, "updated_at": ISO, "finished_at": ISO | null, "error": str | null,
     "last_skip": str | null, "runs": N}

Retries (RetryPolicy, pure): 429 waits what Retry-After says (or backs off when it says nothing);
5xx and connection errors back off exponentially, capped; every page gets a bounded number of
attempts, after which the sync fails with the reason in `error` and can be resumed by running it
again.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from datetime import time as dtime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

from core.config import Store
from core.events import Event
from ingest.admit import admitted
from state.connections import ConnectionStats
from state.log import EventLog, LogUnavailable

Cursor = str | int | None
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


# --- what a vendor module provides ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Page:
    """One page of a resource, already normalised."""

    fetched: int  # vendor objects on the page
    events: list[Event]
    next_cursor: Cursor  # where the next page starts; None when this was the last page
    total: int | None = None  # objects in the whole resource, when the API says (for progress)
    skipped: tuple[str, ...] = ()  # objects that could not be normalised (or events out of range), with why


class Resource(Protocol):
    @property
    def name(self) -> str:
        """The list's name (read-only: the implementations derive it from their spec)."""
        ...

    def fetch(self, cursor: Cursor) -> Page:
        """The page at `cursor` (None: the first). Raises FetchFailed. Blocking I/O."""
        ...


class FetchFailed(Exception):
    """A request failed. `retryable` failures may succeed later; the others never will as they are."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the server asked us to wait (429 Retry-After)
        self.status = status


class SyncFailed(Exception):
    """The sync stopped; the message says why and what to do. The checkpoint is kept."""


def dedupe_ids(events: Sequence[Event]) -> list[Event]:
    """Keeps the first event of each id: a page can state one fact twice (two refunds of one charge)."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e.id not in seen:
            seen.add(e.id)
            out.append(e)
    return out


# --- retry policy (pure) ----------------------------------------------------------------------------

def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP-date (RFC 9110 10.2.3); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6  # tries per page, the first included
    base: float = 1.0  # first backoff, doubled each time
    cap: float = 60.0  # longest backoff
    max_retry_after: float = 900.0  # a server asking for a longer pause fails the sync instead

    def delay(self, failure: FetchFailed, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if not failure.retryable or attempt >= self.attempts:
            return None
        if failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= self.max_retry_after else None
        return min(self.cap, self.base * 2.0 ** (attempt - 1))


# --- --since --------------------------------------------------------------------------------------

def parse_since(text: str, tz: ZoneInfo) -> datetime:
    """`2024-01-31` (midnight in the organisation's zone) or an ISO datetime (its own offset, else `tz`)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), dtime(0), tzinfo=tz).astimezone(UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use a date (2024-01-31) or an ISO datetime (2024-01-31T12:00:00+01:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


# --- the checkpoint (pure) ------------------------------------------------------------------------

def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _counts() -> dict[str, Any]:
    return {"fetched": 0, "events": 0, "appended": 0, "total": None}


def start_state(previous: dict[str, Any] | None, provider: str, since: datetime | None, now: float,
                restart: bool = False) -> dict[str, Any]:
    """Resumes an unfinished sync with the same provider and --since; otherwise starts afresh."""
    since_iso = since.isoformat() if since else None
    if (previous is not None and not restart and previous.get("status") in ("running", "failed")
            and previous.get("provider") == provider and previous.get("since") == since_iso):
        return {**previous, "status": "running", "error": None, "updated_at": iso(now),
                "runs": int(previous.get("runs", 1)) + 1}
    return {
        "provider": provider, "status": "running", "since": since_iso, "resource": None, "cursor": None,
        "done": [], "fetched": 0, "events": 0, "appended": 0, "skipped": 0, "pages": 0, "resources": {},
        "started_at": iso(now), "updated_at": iso(now), "finished_at": None, "error": None,
        "last_skip": None, "runs": 1,
    }


def after_page(state: dict[str, Any], resource: str, page: Page, appended: int, now: float) -> dict[str, Any]:
    """The state once a page's events are in the log; the last page of a resource also marks it done."""
    counts = {**state["resources"].get(resource, _counts())}
    counts["fetched"] += page.fetched
    counts["events"] += len(page.events)
    counts["appended"] += appended
    if page.total is not None:
        counts["total"] = page.total
    return {
        **state, "resource": resource, "cursor": page.next_cursor,
        "fetched": state["fetched"] + page.fetched, "events": state["events"] + len(page.events),
        "appended": state["appended"] + appended, "skipped": state["skipped"] + len(page.skipped),
        "last_skip": page.skipped[-1] if page.skipped else state["last_skip"],
        "pages": state["pages"] + 1, "resources": {**state["resources"], resource: counts}, "updated_at": iso(now),
        "done": state["done"] if page.next_cursor is not None else [*state["done"], resource],
    }


def finished(state: dict[str, Any], now: float) -> dict[str, Any]:
    return {**state, "status": "done", "cursor": None, "error": None, "updated_at": iso(now), "finished_at": iso(now)}


def failed(state: dict[str, Any], error: str, now: float) -> dict[str, Any]:
    return {**state, "status": "failed", "error": error, "updated_at": iso(now)}


# --- progress on stderr ---------------------------------------------------------------------------

def progress_line(state: dict[str, Any], resource: str, elapsed: float, width: int = 24) -> str:
    """One line: the resource, how far into it, and what the log took so far."""
    counts = state["resources"].get(resource, _counts())
    fetched, total = counts["fetched"], counts["total"]
    if total:
        share = min(1.0, fetched / total)
        filled = int(share * width)
        where = f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {fetched}/{total}"
    else:
        where = f"{fetched} fetched"
    rate = f"{state['fetched'] / elapsed:.0f}/s" if elapsed > 0 else ""
    dup = state["events"] - state["appended"]
    return f"{resource:<18} {where}  | total {state['fetched']} objects, {state['appended']} new events, {dup} already in the log  {rate}"


@dataclass
class Progress:
    """A progress bar redrawn in place on a terminal; plain lines, at most every `every` seconds, otherwise."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Clock = time.monotonic
    every: float = 5.0
    _start: float = 0.0
    _last: float = float("-inf")
    _drawn: bool = False

    def __post_init__(self) -> None:
        self._start = self.clock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
            self._drawn = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, state: dict[str, Any], resource: str, final: bool = False) -> None:
        now = self.clock()
        if not (self._tty or final or now - self._last >= self.every):
            return
        self._last = now
        self._write(progress_line(state, resource, now - self._start), final)

    def note(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()


# --- the loop (thin I/O) --------------------------------------------------------------------------

async def _in_thread(fn: Callable[[Cursor], Page], cursor: Cursor) -> Page:
    """Runs blocking I/O in a daemon thread: Ctrl-C during a slow request exits at once instead of
    waiting for it (asyncio.to_thread's pool is joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Page] = loop.create_future()

    def settle(result: Page | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # no error: fn returned its Page

    def work() -> None:
        try:
            result = fn(cursor)
        except BaseException as exc:  # handed to the awaiting task, which decides
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="sync-fetch", daemon=True).start()
    return await future


async def _fetch(resource: Resource, cursor: Cursor, policy: RetryPolicy, sleep: Sleep,
                 progress: Progress | None) -> Page:
    attempt = 1
    while True:
        try:
            return await _in_thread(resource.fetch, cursor)
        except FetchFailed as exc:
            wait = policy.delay(exc, attempt)
            if wait is None:
                if not exc.retryable:
                    raise SyncFailed(f"{resource.name}: {exc.message}") from None
                if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                    raise SyncFailed(f"{resource.name}: {exc.message}; the server asks to wait "
                                     f"{exc.retry_after:.0f} s, run the sync again later") from None
                raise SyncFailed(f"{resource.name}: {exc.message} (gave up after {attempt} attempts)") from None
            if progress is not None:
                progress.note(f"{resource.name}: {exc.message}; retrying in {wait:g} s (attempt {attempt + 1}/{policy.attempts})")
            await sleep(wait)
            attempt += 1


async def run_sync(
    store: Store,
    provider: str,
    resources: Sequence[Resource],
    log: EventLog,
    stats: ConnectionStats,
    *,
    since: datetime | None = None,
    restart: bool = False,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.time,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) a store's sync to the end; returns the final state, also saved with save_sync.

    A vendor failure that retries cannot fix ends it with status "failed" (returned, not raised);
    anything else (a crash, Ctrl-C) is saved as "failed" and re-raised. Either way the checkpoint
    stays, and the next run resumes from it.
    """
    previous = stats.load_sync(store.id)
    state = start_state(previous, provider, since, clock(), restart)
    stats.save_sync(store.id, state)
    resource = state["resource"] or (resources[0].name if resources else "")
    if progress is not None:
        if state["runs"] > 1:
            at = f" after {state['cursor']!r}" if state["cursor"] is not None else ""
            progress.note(f"resuming the {provider} sync of {store.id} (started {state['started_at']}) at {resource}{at}")
        elif previous is not None and previous.get("status") in ("running", "failed"):
            progress.note(f"starting over: the unfinished sync of {store.id} was "
                          + ("abandoned (--restart)" if restart else f"for another --since ({previous.get('since')})"))
    try:
        for res in resources:
            if res.name in state["done"]:
                continue
            resource = res.name
            cursor = state["cursor"] if state["resource"] == res.name else None
            state = {**state, "resource": res.name, "cursor": cursor}
            while True:
                page = await _fetch(res, cursor, policy, sleep, progress)
                # Out of core.limits' ranges: skipped and counted like an object that cannot be read.
                events, refused = admitted(dedupe_ids(page.events))
                page = replace(page, events=events, skipped=(*page.skipped, *(f"out of range: {r}" for r in refused)))
                appended = sum(await log.append(page.events)) if page.events else 0
                state = after_page(state, res.name, page, appended, clock())
                stats.save_sync(store.id, state)
                if progress is not None:
                    for why in page.skipped:
                        progress.note(f"{res.name}: skipped: {why}")
                    progress.update(state, res.name)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            if progress is not None:
                progress.update(state, res.name, final=True)
    except (SyncFailed, LogUnavailable) as exc:
        state = failed(state, f"{exc}. Run the sync again to resume from the checkpoint.", clock())
        stats.save_sync(store.id, state)
        return state
    except BaseException as exc:  # a crash or Ctrl-C: keep the checkpoint, say so, let it propagate
        reason = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else f"crashed: {exc!r}"
        stats.save_sync(store.id, failed(state, f"{resource}: {reason}. Run the sync again to resume from the checkpoint.", clock()))
        raise
    state = finished(state, clock())
    stats.save_sync(store.id, state)
    return state
