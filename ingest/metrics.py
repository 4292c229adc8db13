"""Prometheus metrics of the write side."""

import functools
from typing import Any

from prometheus_client import Counter, Histogram

from core.config import PROVIDERS

DELIVERIES = Counter(
    "storepulse_ingest_deliveries_total",
    "Webhook deliveries by provider and outcome (accepted, duplicate, ignored, rejected, unavailable)",
    ["provider", "outcome"],
)
EVENTS = Counter("storepulse_ingest_events_total", "Canonical events appended to the log", ["provider"])
APPEND_SECONDS = Histogram(
    "storepulse_ingest_append_seconds",
    "Time to append a delivery's events durably",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
REJECTED_DROPPED = Counter(
    "storepulse_ingest_rejected_dropped_total",
    "Kept refused deliveries dropped (oldest first) to keep the rejected store within its byte bounds",
)
REJECTED_DROPPED_BYTES = Counter(
    "storepulse_ingest_rejected_dropped_bytes_total", "Bytes of the kept refused deliveries dropped to stay within the bounds"
)
IGNORED = Counter(
    "storepulse_ingest_ignored_total",
    "Valid deliveries that recorded nothing, by provider and topic (a topic outside a fixed list is 'other')",
    ["provider", "topic"],
)

# Label values never come from a sender as they are: a provider outside PROVIDERS (from the URL) is
# "unknown", and a topic outside this fixed list (the unsigned X-WC-Webhook-Topic header, Shopify's
# X-Shopify-Topic, a Stripe event type) is "other". A replayed delivery with 300 made-up topics
# adds no series. The list holds every topic an adapter uses (tests/test_hardening.py checks it)
# and a few common ones it acknowledges without use.
_LABELLED = frozenset(PROVIDERS)
_TOPICS: dict[str, frozenset[str]] = {
    "stripe": frozenset({
        "checkout.session.completed", "checkout.session.async_payment_succeeded", "checkout.session.expired",
        "payment_intent.succeeded", "charge.succeeded", "charge.refunded", "invoice.paid", "customer.created",
        "customer.updated", "product.updated",
    }),
    "woocommerce": frozenset(
        {"ping"} | {f"{resource}.{event}" for resource in ("order", "customer", "product", "coupon")
                    for event in ("created", "updated", "deleted", "restored")}
    ),
    "shopify": frozenset({
        *(f"orders/{t}" for t in ("create", "updated", "paid", "cancelled", "fulfilled", "partially_fulfilled", "delete")),
        "refunds/create", "checkouts/create", "checkouts/update", "carts/create", "carts/update",
        *(f"customers/{t}" for t in ("create", "update", "enable", "disable", "delete")),
        "products/create", "products/update", "products/delete",
    }),
    "events": frozenset({"events"}),
}


@functools.cache
def _delivery_child(provider: str, outcome: str) -> Any:
    return DELIVERIES.labels(provider, outcome)


@functools.cache
def _events_child(provider: str) -> Any:
    return EVENTS.labels(provider)


@functools.cache
def _ignored_child(provider: str, topic: str) -> Any:
    return IGNORED.labels(provider, topic)


def delivered(provider: str, outcome: str, events: int = 0) -> None:
    """Counts one delivery (and the new events it appended); label children are looked up once."""
    provider = provider if provider in _LABELLED else "unknown"
    _delivery_child(provider, outcome).inc()
    if events:
        _events_child(provider).inc(events)


def ignored(provider: str, topic: str) -> None:
    """Counts a valid delivery that recorded nothing, under a topic from the fixed list or 'other'."""
    known = _TOPICS.get(provider, frozenset())
    _ignored_child(provider if provider in _LABELLED else "unknown", topic if topic in known else "other").inc()
