"""Prometheus metrics of the dataflow process."""

from prometheus_client import Counter, Gauge

EVENTS = Counter("storepulse_flow_events_total", "Canonical events folded into the figures")
CHANGES = Counter("storepulse_flow_changes_total", "Buckets and records changed and sent to the read model")
QUARANTINED = Counter("storepulse_flow_quarantined_total",
                      "Events quarantined instead of folded (flows/quarantine.py): out_of_range, unreadable or fold_failed",
                      ["reason"])
SKIPPED = Counter("storepulse_flow_skipped_total", "Events the dataflow skipped", ["reason"])
TOO_LATE = Counter("storepulse_flow_too_late_total",
                   "Events older than the watermark minus a book's horizon, not counted", ["book"])
UNMATCHED_REFUNDS = Counter("storepulse_flow_unmatched_refunds_total",
                            "Refunds naming an order whose facts are not held (forgotten after the refund horizon, "
                            "or its payment not seen yet); counted in the figures on their own day")
WALL_CLOCK_TICKS = Counter("storepulse_flow_wall_clock_ticks_total", "Wall-clock moves of a watermark that changed a figure")
READ_SECONDS = Counter("storepulse_flow_read_seconds_total", "Time spent reading the event log")
WRITE_SECONDS = Counter("storepulse_flow_write_seconds_total", "Time spent writing the read model")
SNAPSHOTS = Counter("storepulse_flow_snapshots_total", "Organisation states snapshotted")
SNAPSHOT_SECONDS = Counter("storepulse_flow_snapshot_seconds_total", "Time spent snapshotting organisation states")
SNAPSHOT_BYTES = Counter("storepulse_flow_snapshot_bytes_total",
                         "Bytes of organisation snapshots: the pickled small state plus segment files written")
HELD = Gauge("storepulse_flow_state_entries", "Entries held in an organisation's state, at its last snapshot",
             ["org", "what"])
BROKEN = Gauge("storepulse_flow_unreadable_state", "1 for an organisation whose recovery state could not be read: its "
               "figures are stopped until it is rebuilt (docs/operations.md)", ["org"])
