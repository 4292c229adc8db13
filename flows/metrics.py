"""Prometheus metrics of the dataflow process."""

from prometheus_client import Counter

EVENTS = Counter("storepulse_flow_events_total", "Canonical events folded into the figures")
CHANGES = Counter("storepulse_flow_changes_total", "Day totals changed and sent to the read model")
SKIPPED = Counter("storepulse_flow_skipped_total", "Events the dataflow skipped", ["reason"])
