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
IGNORED = Counter(
    "storepulse_ingest_ignored_total", "Valid deliveries of topics storepulse does not use", ["provider", "topic"]
)

# Label values come from the URL: anything else is "unknown", so junk paths cannot grow the series.
_LABELLED = frozenset(PROVIDERS)


@functools.cache
def _delivery_child(provider: str, outcome: str) -> Any:
    return DELIVERIES.labels(provider, outcome)


@functools.cache
def _events_child(provider: str) -> Any:
    return EVENTS.labels(provider)


def delivered(provider: str, outcome: str, events: int = 0) -> None:
    """Counts one delivery (and the new events it appended); label children are looked up once."""
    provider = provider if provider in _LABELLED else "unknown"
    _delivery_child(provider, outcome).inc()
    if events:
        _events_child(provider).inc(events)
