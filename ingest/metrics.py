"""Prometheus metrics of the write side."""

from prometheus_client import Counter, Histogram

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
