"""The automations book of one organisation: turns events and the other books' decisions into firings,
runs them through the trigger logic (core/automations/trigger.py) and renders each released action's
message. Pure: the wall clock comes in as an argument; flows/organisation.py feeds it and the
dataflow emits `take()` to the outbox.

What fires (docs/automations.md has the exact definitions):
- an event of the automation's kind: subject its customer, cause its id (for order.paid and
  order.placed the order, "<kind>:<store>:<order>", so two reports of one payment fire once), at its time;
- cart.abandoned: a cart record turning "abandoned" (flows/carts.py), subject the cart's person,
  cause "<store>:<cart>@<due>", at `due`. A cart bought or recovered drops its pending firings;
- quota.crossed: a QuotaAlert (flows/quota.py), subject "", cause "quota:<percent>@<at>";
- segment.entered / segment.exited: `segment_changed`, called by the segments book;
- schedule: each local time of the schedule, once the watermark passes it, cause "schedule@<ms>".

Only what happened recently fires: a firing whose time is more than MAX_AGE_MS before the wall clock
(a backfill, a replay of history) fires nothing, so importing a year of orders sends no alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from msgspec import Raw

from core.automation_records import AutomationDefinition
from core.automations.definition import (
    CART_ABANDONED,
    DEFINITION_TYPE,
    QUOTA_CROSSED,
    SCHEDULE,
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
    Automation,
    DefinitionError,
    Schedule,
    parse_automation,
)
from core.automations.messages import render
from core.automations.trigger import Firing, Released, Triggers
from core.changes import Change, Record
from core.clock import ms_of
from core.config import Org
from core.definitions import read_definition
from core.digest import digest_payload
from core.events import Event, Kind
from core.rates import Rates
from core.records import Cart, Customer, QuotaAlert, RecordKind, Value
from core.rules import Context, CustomerFacts, Entry, attributes_of
from core.segment_records import SegmentChange
from flows.book import Version
from notifier.actions import Action, Message, action_key

log = logging.getLogger("storepulse.flows")
MAX_AGE_MS = 24 * 3_600_000
SEGMENT_CHANGE = "segment_change"  # the record kind of a segment entry or exit (the segments book)
_BY_ORDER = frozenset({Kind.ORDER_PAID, Kind.ORDER_PLACED})
_CLOSED = frozenset({"purchased", "recovered"})


def _no_profile(customer: str) -> Customer | None:
    return None


def _no_facts(key: str) -> object:
    return None


class AutomationBook:
    def __init__(self, org: str, timezone: str, currency: str = "", locale: str = "en",
                 automations: Mapping[str, Automation] | None = None) -> None:
        self.org, self.timezone, self.currency, self.locale = org, timezone, currency, locale
        self.configured: dict[str, Automation] = dict(automations or {})  # from the config file
        self.defined: dict[str, Automation | None] = {}  # from control events (None: deleted); over the config's
        self.automations: dict[str, Automation] = dict(self.configured)  # what is in force
        self.triggers = Triggers()
        self.next_schedule: dict[str, int] = {}  # automation -> the next scheduled instant it fires at
        self._actions: list[Action] = []
        self._index()

    @classmethod
    def new(cls, org: Org) -> AutomationBook:
        return cls(org.id, org.timezone, org.currency, org.locale, org.automations)

    def define(self, org: Org) -> None:
        """Takes the organisation's current config (a restart after a config change); definitions
        made through control events since stay over it."""
        self.timezone, self.currency, self.locale = org.timezone, org.currency, org.locale
        self.configured = dict(org.automations)
        self._in_force()

    def put(self, automation_id: str, body: Mapping[str, Any]) -> None:
        """A definition carried through the log (a control event `definition.put` of "automation/ID"):
        adds or replaces one, from this point of the stream on. A body that does not parse is ignored
        (the API refuses it with a 400 before anything reaches the log)."""
        try:
            a = parse_automation(automation_id, body, f"automations.{automation_id}", currency=self.currency,
                                 timezone=self.timezone)
        except DefinitionError:
            return
        self.defined[automation_id] = a
        self.next_schedule.pop(automation_id, None)  # its schedule may have changed
        self._in_force()

    def delete(self, automation_id: str) -> None:
        """A control event `definition.deleted` of "automation/ID": its pending actions are dropped when due."""
        self.defined[automation_id] = None
        self._in_force()

    def control(self, e: Event, version: Version) -> list[Record[Value]]:
        """A control event (core/definitions.py): an automation defined or deleted through the log; its
        record for the gateway's list (nothing when the body does not parse)."""
        d = read_definition(e)
        if d is None or d.type != DEFINITION_TYPE:
            return []
        if d.body is None:
            self.delete(d.id)
            value = AutomationDefinition(d.id, Raw(b"null"), deleted=True)
        else:
            self.put(d.id, d.body)
            a = self.defined.get(d.id)
            if a is None:
                return []
            value = AutomationDefinition(d.id, Raw(orjson.dumps(a.to_json())))
        return [Record(self.org, version.next(), RecordKind.AUTOMATION, d.id, "", value)]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()
                if k not in ("_ctx", "_kinds", "_cancels", "_segments", "_actions", "rates")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._actions = []
        self._index()

    def use_rates(self, rates: Rates | None) -> None:
        """The exchange rates `if` converts other currencies with (given at each start, not kept)."""
        self.rates = rates
        self._ctx = Context(self.timezone, self.currency, rates)

    # --- input -----------------------------------------------------------------------------------

    def event(self, e: Event, now_ms: int | None, profile: Callable[[str], Customer | None] = _no_profile) -> None:
        """An event folded: it may cancel pending actions and fire automations of its kind. `profile`
        gives a customer's profile (its e-mail, name and registration; asked only when something fires)."""
        if e.kind in self._cancels and e.customer:
            self.triggers.cancel(self.automations, e.kind, e.customer, e.time)
        if e.kind in self._kinds and self._fresh(e.time, now_ms):
            cause = f"{e.kind}:{e.store}:{e.order}" if e.kind in _BY_ORDER and e.order else e.id
            p = profile(e.customer) if e.customer else None
            self._fire(Firing(str(e.kind), e.customer or "", cause, e.time, _payload(e, p), _facts(e, p)))

    def records(self, changes: Iterable[Change], now_ms: int | None,
                profile: Callable[[str], Customer | None] = _no_profile,
                facts: Callable[[str], object] = _no_facts) -> None:
        """The other books' changes: abandoned, bought and recovered carts, quota alerts, segment
        entries and exits. `profile` gives a customer's profile (for the e-mail address and name a
        message shows); `facts` the facts a segment change (by its key) was decided on, which `if` reads."""
        for r in changes:
            if type(r) is not Record:
                continue
            v = r.value
            if type(v) is Cart and CART_ABANDONED in self._kinds and v.due is not None:
                cause = f"{v.store}:{v.cart}@{v.due}"
                # one reminder a cart: activity since an abandonment replaces its pending reminder (a late
                # burst of one cart's events decides it abandoned at each of them; the last one stands)
                self.triggers.supersede(CART_ABANDONED, cause)
                if v.status == "abandoned" and self._fresh(v.due, now_ms):
                    payload = _cart_payload(v, profile(v.person) if v.person else None)
                    self._fire(Firing(CART_ABANDONED, v.person or "", cause, v.due, payload, _cart_facts(v)))
                elif v.status in _CLOSED:
                    self.triggers.drop(CART_ABANDONED, cause)
            elif r.kind == SEGMENT_CHANGE and self._segments:
                decided_on = facts(r.key)
                self._segment_record(v, now_ms, decided_on if isinstance(decided_on, CustomerFacts) else None, profile)
            elif type(v) is QuotaAlert and QUOTA_CROSSED in self._kinds and self._fresh(v.at, now_ms):
                payload = {"percent": v.percent, "count": v.count, "limit": v.limit}
                self._fire(Firing(QUOTA_CROSSED, "", f"quota:{v.percent}@{v.at}", v.at, payload))

    def segment_changed(self, segment: str, customer: str, entered: bool, at: int, cause: str,
                        now_ms: int | None, facts: CustomerFacts | None = None,
                        profile: Callable[[str], Customer | None] = _no_profile) -> None:
        """A customer entered or left a segment (the segments book calls this). The payload carries the
        customer's e-mail address and name from their profile: an e-mail to "customer" needs the address."""
        trigger = SEGMENT_ENTERED if entered else SEGMENT_EXITED
        if trigger in self._kinds and self._fresh(at, now_ms):
            payload = {"customer": customer, "segment": segment, "change": "entered" if entered else "exited",
                       **_contact(profile(customer))}
            self._fire(Firing(trigger, customer, f"{segment}:{cause}@{at}", at, payload, facts, segment))

    def _segment_record(self, v: object, now_ms: int | None, facts: CustomerFacts | None,
                        profile: Callable[[str], Customer | None] = _no_profile) -> None:
        # Entries of a segment defined after the data (cause "defined") are the members it found, not
        # customers who just entered, and a withdrawn change (superseded) never happened: they fire nothing.
        assert isinstance(v, SegmentChange)
        if v.cause != "defined" and not v.superseded:
            self.segment_changed(v.segment, v.customer, v.change == "entered", v.at, v.cause, now_ms, facts, profile)

    def _digest(self, span: str | None, at: int) -> dict[str, str]:
        return digest_payload(span, at, self.timezone)

    def advance(self, watermark: int, now_ms: int | None) -> None:
        """The watermark moved: waits that it passed are released, schedules that it passed fire."""
        for a_id, at in sorted(self.next_schedule.items()):
            a = self.automations[a_id]
            assert a.schedule is not None
            while at < watermark:
                if self._fresh(at, now_ms):
                    self._fire(Firing(SCHEDULE, "", f"schedule@{at}", at, self._digest(a.digest, at)), only=a_id)
                at = next_occurrence(a.schedule, at, self.timezone)
            self.next_schedule[a_id] = at
        for a in self.automations.values():
            if a.schedule is not None and a.id not in self.next_schedule:
                self.next_schedule[a.id] = next_occurrence(a.schedule, watermark - 1, self.timezone)
        self._emit(self.triggers.advance(self.automations, watermark, self._ctx))

    def next_due(self) -> int | None:
        """The earliest instant the watermark must pass for something to be released or scheduled."""
        times = [t for t in (self.triggers.next_due(), *self.next_schedule.values()) if t is not None]
        return min(times) if times else None

    def take(self) -> list[Action]:
        """The actions released since the last call, one per (firing, channel)."""
        out, self._actions = self._actions, []
        return out

    def held(self) -> dict[str, int]:
        return {f"automations_{k}": v for k, v in self.triggers.held().items()}

    # --- internals -------------------------------------------------------------------------------

    def _in_force(self) -> None:
        merged: dict[str, Automation | None] = {**self.configured, **self.defined}
        self.automations = {i: a for i, a in merged.items() if a is not None}
        self.next_schedule = {a: t for a, t in self.next_schedule.items() if a in self.automations}
        self._index()

    def _index(self) -> None:
        self._ctx = Context(self.timezone, self.currency, getattr(self, "rates", None))
        self._kinds = frozenset(a.trigger for a in self.automations.values())
        self._cancels = frozenset(k for a in self.automations.values() for k in a.cancel_on)
        self._segments = bool(self._kinds & {SEGMENT_ENTERED, SEGMENT_EXITED})

    def _fresh(self, at: int, now_ms: int | None) -> bool:
        return now_ms is None or at >= now_ms - MAX_AGE_MS

    def _fire(self, firing: Firing, only: str | None = None) -> None:
        automations = self.automations if only is None else {only: self.automations[only]}
        self._emit(self.triggers.fire(automations, firing, self._ctx))

    def _emit(self, released: list[Released]) -> None:
        for r in released:
            a, f = self.automations[r.automation], r.firing
            locale = a.locale or self.locale
            try:
                m = render(a.id, f.trigger, f.subject, f.cause, f.at, r.due, f.payload, locale=locale,
                           timezone=self.timezone, templates=a.templates)
                message = Message(subject=m.subject, text=m.text, html=m.html, slack_text=m.slack_text, json=m.json)
            except Exception:  # never fatal to the event that fired it: the notifier fills an empty message's parts
                log.exception("organisation %s: automation %s: the message could not be rendered", self.org, a.id)
                message = Message()
            key = action_key(a.id, f.subject, f.cause)
            for channel in a.send:
                self._actions.append(Action(key, self.org, a.id, channel, f.trigger, f.subject, f.cause, f.at, r.due,
                                            locale, dict(f.payload), message))


def next_occurrence(schedule: Schedule, after: int, timezone: str) -> int:
    """The first instant after `after` (ms) at the schedule's local time on one of its days."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(after / 1000, tz)
    for days in range(8):
        day = (local + timedelta(days=days)).date()
        if day.weekday() not in schedule.days:
            continue
        at = ms_of(datetime(day.year, day.month, day.day, schedule.minute // 60, schedule.minute % 60, tzinfo=tz))
        if at > after:
            return at
    raise AssertionError("a schedule has at least one day")  # pragma: no cover


def _units(e: Event) -> int:
    return sum(i.qty for i in e.items)


def _entry(e: Event) -> Entry:
    return Entry(e.time, e.currency, e.amount, _units(e), tuple(i.product for i in e.items),
                 tuple(i.category for i in e.items if i.category), tuple(i.brand for i in e.items if i.brand))


def _facts(e: Event, profile: Customer | None) -> CustomerFacts:
    """What `if` reads for an event: the event's own order (or refund), its store and custom fields,
    and from the customer's profile when there is one, when they registered and were last active."""
    registered = profile.registered if profile is not None else None
    last_active = profile.last_active if profile is not None else e.time
    first_seen = min(profile.first_seen, e.time) if profile is not None else e.time
    return CustomerFacts(first_seen=first_seen, registered=registered, last_active=last_active, stores=(e.store,),
                         attributes=attributes_of(e.attrs),
                         orders=(_entry(e),) if e.kind is Kind.ORDER_PAID else (),
                         refunds=(_entry(e),) if e.kind is Kind.ORDER_REFUNDED else ())


def _contact(profile: Customer | None) -> dict[str, str]:
    """The e-mail address and name a message shows and an e-mail to "customer" is sent to, when the profile has them."""
    out: dict[str, str] = {}
    if profile is not None and profile.email:
        out["email"] = profile.email
    if profile is not None and profile.name:
        out["name"] = profile.name
    return out


def _payload(e: Event, profile: Customer | None) -> dict[str, Any]:
    out: dict[str, Any] = {"event": e.id, "store": e.store}
    if e.customer:
        out["customer"] = e.customer
    out |= _contact(profile)
    if e.order:
        out["order"] = e.order
    if e.cart:
        out["cart"] = e.cart
    if e.currency:
        out["amount"], out["currency"] = e.amount, e.currency
    if e.items:
        out["items"] = [[i.product, i.qty, i.unit_price, i.name] for i in e.items]
    return out


def _cart_payload(c: Cart, profile: Customer | None) -> dict[str, Any]:
    out: dict[str, Any] = {"store": c.store, "cart": c.cart, "amount": c.value, "currency": c.currency,
                           "items": [[p, q, u, c.names.get(p, "")] for p, q, u in c.items], "last_activity": c.last}
    if c.person:
        out["customer"] = c.person
    return out | _contact(profile)


def _cart_facts(c: Cart) -> CustomerFacts:
    products = tuple(p for p, _, _ in c.items)
    cart = Entry(c.last, c.currency, c.value, sum(q for _, q, _ in c.items), products)
    return CustomerFacts(first_seen=c.first, last_active=c.last, stores=(c.store,), open_carts=(cart,),
                         last_cart_created=c.first, last_cart_abandoned=c.due)
