"""Stripe backfill: list a store's history with the stripe library, normalised exactly like webhooks.

Lists, in this order (the first object to state a fact decides its event, so the richest goes first):

    customers                            -> customer_created
    checkout sessions (status complete)  -> paid_from_checkout_session (items, the buyer's e-mail)
    payment intents                      -> paid_from_payment_intent (succeeded ones)
    charges                              -> paid_from_charge (succeeded; charges without an intent)
    refunds (charge and its refunds expanded) -> refund_from_charge, at the refund's time

All of them name the payment intent, so one payment is one `stripe:<store>:paid:<pi>` event however
many objects state it, and a webhook already received for it makes the backfill's copy a duplicate.
Invoices are not listed: since API version 2025-03-31 an invoice no longer names its payment
intent, so its event would count the payment a second time under the invoice's id.

Event time is the object's `created`. Stripe lists newest first; the cursor is the id of the last
object of the last page appended (`starting_after`). Objects created while a sync runs land before
its cursor and are not listed: the webhooks bring those.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from core.config import Store
from core.events import Event
from ingest import stripe as stripe_ingest
from ingest.errors import BadPayload
from ingest.sync import Cursor, FetchFailed, Page, Resource, retry_after_seconds

PROVIDER = "stripe"
PAGE_SIZE = 100  # Stripe's largest `limit`
Obj = Mapping[str, Any]


def _created_ms(obj: Obj, where: str) -> int:
    created = obj.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise BadPayload(f"{where}.created must be an integer (Unix seconds), got {created!r}")
    return created * 1000


# Refund states in which Stripe counts the amount in the charge's amount_refunded.
_COUNTED_REFUNDS = frozenset({"succeeded", "pending", "requires_action"})


def refunded_up_to(refund: Obj, charge: Obj) -> int:
    """The charge's `amount_refunded` just after `refund`: what the charge.refunded webhook for it carried.

    Worked out from the charge's own refund list; when that list is incomplete or does not add up to
    the charge's total (refunds since failed or reversed), the charge's current total is used.
    """
    current = charge.get("amount_refunded")
    listed = charge.get("refunds")
    data = listed.get("data") if isinstance(listed, Mapping) else None
    if not isinstance(current, int) or not isinstance(data, list) or not isinstance(listed, Mapping) or listed.get("has_more"):
        return current if isinstance(current, int) else 0
    counted = [r for r in data if isinstance(r, Mapping) and r.get("status") in _COUNTED_REFUNDS
               and isinstance(r.get("amount"), int) and isinstance(r.get("created"), int) and isinstance(r.get("id"), str)]
    if sum(r["amount"] for r in counted) != current:
        return current
    key = (refund.get("created"), refund.get("id"))
    return sum(r["amount"] for r in counted if (r["created"], r["id"]) <= key)


def refund_events(refund: Obj, store: Store) -> list[Event]:
    """ORDER_REFUNDED for one refund, named like the charge.refunded webhook that reported it."""
    time_ms = _created_ms(refund, "refund")
    if refund.get("status") not in (None, *_COUNTED_REFUNDS):
        return []  # failed or canceled: no money went back
    charge = refund.get("charge")
    if charge is None:
        return []  # not a charge's refund: there is no payment of ours to attach it to
    if not isinstance(charge, Mapping):
        raise BadPayload(f"refund {refund.get('id')!r}: charge is not expanded (list refunds with expand[]=data.charge.refunds)")
    return stripe_ingest.refund_from_charge({**charge, "amount_refunded": refunded_up_to(refund, charge)}, store, time_ms)


@dataclass(frozen=True, slots=True)
class StripeList:
    name: str
    path: tuple[str, ...]  # the service under StripeClient.v1
    params: Mapping[str, Any]  # filters and expansions every request carries
    to_events: Callable[[Obj, Store], list[Event]]


def _by_created(normalise: Callable[[Obj, Store, int], list[Event]], where: str) -> Callable[[Obj, Store], list[Event]]:
    return lambda obj, store: normalise(obj, store, _created_ms(obj, where))


LISTS: tuple[StripeList, ...] = (
    StripeList("customers", ("customers",), {}, _by_created(stripe_ingest.customer_created, "customer")),
    StripeList("checkout_sessions", ("checkout", "sessions"), {"status": "complete"},
               _by_created(stripe_ingest.paid_from_checkout_session, "checkout.session")),
    StripeList("payment_intents", ("payment_intents",), {}, _by_created(stripe_ingest.paid_from_payment_intent, "payment_intent")),
    StripeList("charges", ("charges",), {}, _by_created(stripe_ingest.paid_from_charge, "charge")),
    StripeList("refunds", ("refunds",), {"expand": ["data.charge.refunds"]}, refund_events),
)


# --- pure: request parameters, page -> events, error -> retry decision ----------------------------

def list_params(spec: StripeList, cursor: Cursor, since: datetime | None, limit: int = PAGE_SIZE) -> dict[str, Any]:
    params: dict[str, Any] = {**spec.params, "limit": limit}
    if since is not None:
        params["created"] = {"gte": int(since.timestamp())}
    if cursor is not None:
        params["starting_after"] = str(cursor)
    return params


def page_from_list(spec: StripeList, listed: Obj, store: Store) -> Page:
    """Events of one Stripe list object ({"object": "list", "data": [...], "has_more": bool})."""
    data = listed.get("data")
    if not isinstance(data, list):
        raise FetchFailed(f"Stripe answered {spec.name} without a list (no 'data' array)", retryable=False)
    events: list[Event] = []
    skipped: list[str] = []
    for obj in data:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
            skipped.append(f"an element of {spec.name} is not an object with an id: {str(obj)[:80]}")
            continue
        try:
            events.extend(spec.to_events(obj, store))
        except BadPayload as exc:
            skipped.append(f"{obj['id']}: {exc.message}")
    last = data[-1].get("id") if data and isinstance(data[-1], Mapping) else None
    more = bool(listed.get("has_more")) and isinstance(last, str)
    return Page(len(data), events, last if more else None, None, tuple(skipped))


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return value
    return None


def classify(exc: stripe.StripeError, store: Store, now: float) -> FetchFailed:
    """What a Stripe error means for the sync: retry (rate limit, outage, network) or stop, and what to do."""
    status = exc.http_status
    detail = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return FetchFailed(f"Stripe rate limit (429): {detail}", retryable=True, status=429,
                           retry_after=retry_after_seconds(_header(exc, "retry-after"), now))
    if isinstance(exc, stripe.APIConnectionError):
        return FetchFailed(f"cannot reach Stripe{' at ' + store.api_url if store.api_url else ''}: {detail}", retryable=True)
    if isinstance(exc, stripe.AuthenticationError):
        return FetchFailed(f"Stripe refused the API key (401): {detail}. Check api_key of store {store.id} "
                           "(a secret key sk_..., or a restricted key rk_... with read access)", retryable=False, status=401)
    if isinstance(exc, stripe.PermissionError):
        return FetchFailed(f"the API key may not read this (403): {detail}. Give the restricted key read access to "
                           "customers, checkout sessions, payment intents, charges and refunds", retryable=False, status=403)
    if status is None or status >= 500 or status == 409:
        return FetchFailed(f"Stripe answered {status or 'without a status'}: {detail}", retryable=True, status=status)
    return FetchFailed(f"Stripe refused the request ({status}): {detail}", retryable=False, status=status)


# --- I/O ------------------------------------------------------------------------------------------

def client_for(store: Store) -> stripe.StripeClient:
    """A client on the store's key; its own retries are off, RetryPolicy decides (and tells the user)."""
    if not store.api_key:
        raise ValueError(f"store {store.id} has no api_key: set api_key = \"env:NAME\" (a Stripe secret key) in its config")
    return stripe.StripeClient(store.api_key, max_network_retries=0,
                               base_addresses={"api": store.api_url.rstrip("/")} if store.api_url else None)


@dataclass
class StripeResource:
    spec: StripeList
    store: Store
    client: stripe.StripeClient
    since: datetime | None = None
    limit: int = PAGE_SIZE
    clock: Callable[[], float] = time.time

    @property
    def name(self) -> str:
        return self.spec.name

    def fetch(self, cursor: Cursor) -> Page:
        service: Any = self.client.v1
        for part in self.spec.path:
            service = getattr(service, part)
        try:
            listed = service.list(params=list_params(self.spec, cursor, self.since, self.limit))
        except stripe.StripeError as exc:
            raise classify(exc, self.store, self.clock()) from None
        return page_from_list(self.spec, listed.to_dict(), self.store)


def resources(store: Store, since: datetime | None = None, client: stripe.StripeClient | None = None,
              limit: int = PAGE_SIZE) -> list[Resource]:
    client = client or client_for(store)
    return [StripeResource(spec, store, client, since, limit) for spec in LISTS]
