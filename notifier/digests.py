"""Digests: a scheduled automation with `digest = "day"` (or "week") fires with the span it covers
(core/digest.py `digest_payload`, fired by flows/automations.py); before its actions enter the outbox, this fills in the
figures from the read model and the message in the action's language (core/digest.py,
core/digest_text.py). So the message is decided once, when it is put: every retry and replay sends
the same words, and a replay of the dataflow puts the same key, which the outbox keeps once.

It wraps the outbox the dataflow writes to (`storepulse flows`): the dataflow stays pure, this is the
I/O at its edge.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date

import msgspec

from core.changes import DAY
from core.config import Config
from core.digest import Quota, Span, compute_digest, spans
from core.digest_text import render_digest
from core.figures import quota_count
from core.rates import Rates, RecordingRates
from core.records import CartDay, Order
from flows.outbox_sink import ActionOutbox
from notifier.actions import Action, Message
from state.readmodel import ReadModel


class DigestingOutbox:
    """An ActionOutbox that fills digest actions' figures and message, then puts everything into `inner`."""

    def __init__(self, inner: ActionOutbox, model: ReadModel, config: Config, rates: Rates | None) -> None:
        self._inner, self._model, self._config, self._rates = inner, model, config, rates

    def put(self, actions: Sequence[Action], now: int) -> int:
        # one firing is one action per channel: its figures are read from the read model once, not per channel
        filled: dict[str, Action] = {}
        out = []
        for a in actions:
            done = filled.get(a.key)
            if done is None:
                done = filled[a.key] = self._filled(a)
            out.append(a if done is a else msgspec.structs.replace(a, payload=done.payload, message=done.message))
        return self._inner.put(out, now)

    def close(self) -> None:
        self._inner.close()
        self._model.close()

    def _filled(self, a: Action) -> Action:
        span = a.payload.get("digest")
        org = self._config.orgs.get(a.org)
        if span not in ("day", "week") or org is None or "figures" in a.payload:
            return a
        last = date.fromisoformat(str(a.payload["last"]))
        first = spans(Span(span), last)[-1][0]
        rates = RecordingRates(self._rates)  # a missing rate leaves that amount out and is said, never fatal
        orders = self._model.records(a.org, Order, first, last.isoformat())
        quota = None
        if org.plan_limit:
            paid = (r.value.paid for r in self._model.records(a.org, Order) if r.value.paid is not None)
            quota = Quota(quota_count(paid, a.fired_at), org.plan_limit)
        digest = compute_digest(
            a.org, Span(span), last, currency=org.currency, buckets=self._model.snapshot(a.org, DAY)[1],
            orders=orders, cart_days=self._model.records(a.org, CartDay, first, last.isoformat()), rates=rates,
            quota=quota)
        words = render_digest(digest, a.locale, a.org)
        figures = digest.to_json()
        missing = sorted(f"{currency} {day}" for currency, day in rates.gaps)
        if missing:
            figures["missing_rates"] = missing
        text = words.text + (f"\n({', '.join(missing)}: no exchange rate; those amounts are left out)\n" if missing else "")
        message = Message(subject=words.subject, text=text, html=f"<pre>{html.escape(text)}</pre>",
                          slack_text=f"*{words.subject}*\n{text}", json=figures)
        return msgspec.structs.replace(a, payload={**a.payload, "figures": figures}, message=message)
