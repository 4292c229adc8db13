"""The notifier: claims due deliveries from the outbox, attempts them, records what happened.

One pass: claim up to `batch` due deliveries (leased to this notifier), attempt them concurrently
(a Slack channel's deliveries of the pass as one coalesced message), record every attempt in one
write. What an answer means and when to retry is notifier/schedule.py (pure); this module is the
I/O around it. Several notifiers may run against one outbox: the lease keeps them apart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from core.channels import Channel, scrub
from core.config import Config
from notifier import mail, metrics, slack, webhook
from notifier.actions import Action, Message, action_key, delivery_id
from notifier.guard import Refused, check_url
from notifier.outbox import LEASE_MS, Attempt, Claimed, Delivery, Outbox, Result, Status
from notifier.schedule import STANDARD_RETRY, TIMEOUT_S, Outcome, Verdict, failed, next_try

log = logging.getLogger("storepulse.notifier")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Tuning:
    batch: int = 200  # deliveries claimed per pass
    concurrency: int = 100  # attempts in flight at once
    lease_ms: int = LEASE_MS
    poll_s: float = 0.05  # wait between passes while nothing is due
    lanes: int = 2  # passes under way at once: one claims and records while another's requests are in flight
    timeout_s: float = TIMEOUT_S


class Notifier:
    def __init__(self, config: Config, outbox: Outbox, *, tuning: Tuning | None = None, owner: str | None = None,
                 clock: Callable[[], int] = wall_ms, rng: random.Random | None = None) -> None:
        self.config = config
        self.outbox = outbox
        self.tuning = tuning or Tuning()
        self.owner = owner or f"notifier-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.rng = rng or random.Random()
        self._client: aiohttp.ClientSession | None = None
        self._queued: list[tuple[list[Result], asyncio.Future[None]]] = []  # results waiting for the next write
        self._committer: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.tuning.concurrency)
        self.gate = slack.Gate(lambda: time.monotonic() * 1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until `stop` is set; the passes under way finish and are recorded."""
        log.info("notifier %s started", self.owner)
        await asyncio.gather(self._gauges_every_second(stop), *(self._lane(stop) for _ in range(self.tuning.lanes)))
        await self.close()
        log.info("notifier %s stopped", self.owner)

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                n = await self.pass_once()
            except Exception:  # the outbox unavailable (Redis down, disk full): log, wait, try again
                log.exception("notifier pass failed; trying again in 1 s")
                n = 0
                await _wait(stop, 1.0)
            if n == 0:
                await _wait(stop, self.tuning.poll_s)

    async def _gauges_every_second(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._gauges()
            await _wait(stop, 1.0)

    @property
    def client(self) -> aiohttp.ClientSession:
        """The HTTP client, made on first use (inside the event loop). aiohttp, not httpx: bench/notifier.py
        measured httpx's pooled AsyncClient at 120-500 requests/s to a local receiver, aiohttp at 3,000-11,000."""
        if self._client is None:
            # No redirects are followed (a 3xx is permanent; it could lead to a private host); no proxy from the environment.
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.tuning.timeout_s),
                                                 connector=aiohttp.TCPConnector(limit=self.tuning.concurrency))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def pass_once(self) -> int:
        """One claim, attempt and record round; returns how many deliveries it handled."""
        claims, disabled = await asyncio.to_thread(self._claim)
        if not claims:
            return 0
        groups: dict[tuple[str, str], list[Claimed]] = {}
        singles: list[Claimed] = []
        for c in claims:
            channel = self._channel(c.delivery)
            if channel is not None and channel.kind == "slack":
                groups.setdefault((channel.org, channel.id), []).append(c)
            else:
                singles.append(c)
        done = await asyncio.gather(*(self._attempt([c], disabled) for c in singles),
                                    *(self._slack(g, disabled) for g in groups.values()))
        # Webhooks and e-mails carry their delivery id: recorded together, one write per pass.
        await self._record([r for rs in done for r in rs])
        return len(claims)

    def _claim(self) -> tuple[list[Claimed], dict[str, dict[str, str]]]:
        """The claim and its organisations' disabled channels, read in one trip to a worker thread: on a busy
        machine each trip waits for a core (bench/automation_latency.py: the outbox -> attempt stage)."""
        claims = self.outbox.claim(self.clock(), self.tuning.batch, self.owner, self.tuning.lease_ms)
        return claims, {org: self.outbox.disabled_channels(org) for org in {c.delivery.action.org for c in claims}}

    async def _slack(self, claims: list[Claimed], disabled: dict[str, dict[str, str]]) -> list[Result]:
        """A Slack channel's coalesced deliveries, recorded the moment Slack answers: Slack has no
        idempotency key, so the time between its answer and our record is the window in which a
        crash makes the message be sent again (docs/notifier.md)."""
        await self._record(await self._attempt(claims, disabled))
        return []

    async def _record(self, results: list[Result]) -> None:
        """Records `results`, together with whatever else is waiting to be recorded (group commit:
        the results that arrive during a write go into the next one)."""
        if not results:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((results, waiter))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        await waiter

    async def _commit_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            results = [r for rs, _ in batch for r in rs]
            try:
                await asyncio.to_thread(self.outbox.record, results, self.clock())
            except Exception as exc:  # the leases stay: the deliveries are attempted again after them
                for _, waiter in batch:
                    waiter.set_exception(exc)
                continue
            recorded = self.clock()
            for r in results:
                self._count(r)
                metrics.UNRECORDED.labels(self._kind(r)).observe(max(0.0, recorded - r.attempt.at - r.attempt.latency_ms) / 1000)
            for _, waiter in batch:
                waiter.set_result(None)

    def _channel(self, d: Delivery) -> Channel | None:
        org = self.config.orgs.get(d.action.org)
        return org.channels.get(d.action.channel) if org is not None else None

    async def _attempt(self, claims: list[Claimed], disabled: dict[str, dict[str, str]]) -> list[Result]:
        """Attempts one delivery, or one Slack channel's coalesced deliveries; their results."""
        first = claims[0].delivery
        channel = self._channel(first)
        start = self.clock()
        if channel is None:
            outcome = Outcome(Verdict.DEAD, None, f"channel {first.action.channel!r} is not in orgs.{first.action.org}.channels "
                                                  "of the config (add it, then replay)")
        elif channel.id in disabled.get(channel.org, {}):
            outcome = Outcome(Verdict.DEAD, None, f"channel {channel.id} is disabled: {disabled[channel.org][channel.id]}")
        elif channel.kind == "slack":
            async with self.gate.lock(channel), self._slots:  # one message at a time per channel, spaced by the gate
                held = self.gate.delay_ms(channel)
                if held > slack.INTERVAL_MS:  # Slack's Retry-After: not sent now, nor slept on (the lane goes on)
                    outcome = Outcome(Verdict.RETRY, None, f"not sent: Slack asked to wait {held / 1000:.1f} s more (Retry-After)",
                                      int(held))
                else:
                    await self.gate.wait(channel)
                    start = self.clock()
                    outcome = await self._send(channel, claims, start)
            if outcome.retry_after_ms is not None and outcome.status is not None:
                self.gate.hold(channel, outcome.retry_after_ms)
        else:
            async with self._slots:
                outcome = await self._send(channel, claims, start)
        end = self.clock()
        if channel is not None and outcome.verdict == Verdict.GONE:
            await asyncio.to_thread(self.outbox.disable_channel, channel.org, channel.id,
                                    f"the receiver answered 410 Gone at {end} ms; re-enable with a successful test", end)
            log.warning("channel %s/%s disabled: its receiver answered 410 Gone", channel.org, channel.id)
        if channel is not None:
            metrics.ATTEMPT_SECONDS.labels(channel.kind).observe((end - start) / 1000)
        return [self._result(c, channel, outcome, start, end) for c in claims]

    async def test(self, channel: Channel, to: str | None = None) -> Attempt:
        """Sends a test message to `channel` now, outside the outbox; a success re-enables a disabled channel.
        `to`: the address for an e-mail channel whose recipient is the customer."""
        now = self.clock()
        key = action_key("test", channel.id, uuid.uuid4().hex)
        text = f"storepulse test message to channel {channel.id} of {channel.org}"
        action = Action(key, channel.org, "test", channel.id, "test", "", "test", now, now,
                        payload={"test": True, **({"email": to} if to else {})}, message=Message(subject=text, text=text))
        claim = Claimed(Delivery(delivery_id(key, channel.id), action, Status.PENDING, now, now), "")
        outcome = await self._send(channel, [claim], now)
        end = self.clock()
        if outcome.verdict == Verdict.DELIVERED:
            await asyncio.to_thread(self.outbox.enable_channel, channel.org, channel.id)
        return Attempt(now, outcome.status, float(end - now), outcome.error, str(outcome.verdict))

    async def _send(self, channel: Channel, claims: list[Claimed], start: int) -> Outcome:
        try:
            if channel.kind == "email":
                return await self._mail(channel, claims[0].delivery, start)
            assert channel.url is not None
            await check_url(channel.url, channel.allow_private)
            if channel.kind == "webhook":
                return await webhook.post(self.client, channel, claims[0].delivery, start)
            return await slack.post(self.client, channel, [c.delivery for c in claims], start)
        except Refused as exc:
            return Outcome(Verdict.DEAD, None, f"refused to call the channel's URL: {exc}")
        except TimeoutError:
            return failed(f"no answer within {self.tuning.timeout_s:g} s")
        except aiohttp.ClientError as exc:  # its message may hold the URL: a Slack URL's path is a credential
            return failed(scrub(f"{type(exc).__name__}: {exc}", channel))
        except Exception as exc:  # a bug or a library's surprise must not cost the pass's other results
            log.exception("attempt to channel %s/%s failed unexpectedly", channel.org, channel.id)
            return failed(scrub(f"unexpected {type(exc).__name__}: {exc}", channel))

    async def _mail(self, channel: Channel, d: Delivery, start: int) -> Outcome:
        smtp = self.config.smtp
        if smtp is None:
            return Outcome(Verdict.DEAD, None, "no [smtp] table in the config: e-mail channels cannot send")
        wanted = mail.recipients(channel, d)
        if not wanted:
            return Outcome(Verdict.DEAD, None, 'to = "customer" but the action has no payload "email"')
        to = [a for a in wanted if not await asyncio.to_thread(self.outbox.suppressed, d.action.org, a)]
        if not to:
            return Outcome(Verdict.SUPPRESSED, None, "every recipient is on the organisation's suppression list")
        org_key = self.config.orgs[d.action.org].token_sha256
        sent = await mail.send(smtp, mail.message(smtp, channel, d, to, org_key, start), to, self.tuning.timeout_s)
        for address in sent.refused:
            await asyncio.to_thread(self.outbox.suppress, d.action.org, address, sent.outcome.error or "refused", self.clock())
        return sent.outcome

    def _result(self, c: Claimed, channel: Channel | None, outcome: Outcome, start: int, end: int) -> Result:
        d = c.delivery
        at = None
        if outcome.verdict == Verdict.SUPPRESSED:
            status = Status.CANCELLED
        elif outcome.verdict == Verdict.DELIVERED:
            status = Status.DELIVERED
        elif outcome.verdict == Verdict.RETRY:
            schedule = STANDARD_RETRY if channel is None or channel.retry is None else channel.retry
            at = next_try(outcome, d.tries + 1, schedule, end, self.rng.random())
            status = Status.DEAD if at is None else Status.PENDING
        else:
            status = Status.DEAD
        result = {Status.DELIVERED: "delivered", Status.PENDING: "retry", Status.CANCELLED: "cancelled",
                  Status.DEAD: "gone" if outcome.verdict == Verdict.GONE else "dead"}[status]
        error = outcome.error if status != Status.DEAD or outcome.verdict != Verdict.RETRY else \
            f"{outcome.error} (the last of {d.tries + 1} attempts)"
        return Result(c, Attempt(start, outcome.status, float(end - start), error, result), status, at or 0)

    def _kind(self, r: Result) -> str:
        channel = self._channel(r.claim.delivery)
        return channel.kind if channel is not None else "unknown"

    def _count(self, r: Result) -> None:
        kind = self._kind(r)
        metrics.ATTEMPTS.labels(kind, r.attempt.outcome).inc()
        if r.status != Status.PENDING:
            metrics.DELIVERIES.labels(kind, str(r.status)).inc()
        if r.status == Status.DELIVERED:
            metrics.FIRED_TO_DELIVERED.labels(kind).observe(max(0, r.attempt.at + r.attempt.latency_ms - r.claim.delivery.action.fired_at) / 1000)

    async def _gauges(self) -> None:
        try:
            stats = await asyncio.to_thread(self.outbox.stats)
            off = {org: await asyncio.to_thread(self.outbox.disabled_channels, org) for org in self.config.orgs}
        except Exception:
            log.exception("cannot read the outbox's stats")
            return
        metrics.PENDING.set(stats.pending)
        age = 0.0 if stats.oldest_pending_fired_at is None else max(0, self.clock() - stats.oldest_pending_fired_at) / 1000
        metrics.OLDEST_PENDING_AGE.set(age)
        for org in self.config.orgs.values():
            for channel in org.channels:
                metrics.CHANNEL_DISABLED.labels(org.id, channel).set(1 if channel in off[org.id] else 0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass

