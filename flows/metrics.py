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
SNAPSHOT_AHEAD_SECONDS = Counter("storepulse_flow_snapshot_ahead_seconds_total",
                                 "Time spent after batches on what the next snapshot needs: packing changed segment "
                                 "states, merging snapshot files a step at a time")
GC_PAUSES = Counter("storepulse_flow_gc_pauses_total", "Collections by the cyclic garbage collector (flows/gc_watch.py)")
GC_SECONDS = Counter("storepulse_flow_gc_seconds_total", "Time the cyclic garbage collector paused the dataflow process")
GC_LONGEST = Gauge("storepulse_flow_gc_longest_pause_seconds", "The cyclic garbage collector's longest pause since start")
SNAPSHOT_BYTES = Counter("storepulse_flow_snapshot_bytes_total",
                         "Bytes of organisation snapshots: the pickled small state plus segment files written")
HELD = Gauge("storepulse_flow_state_entries", "Entries held in an organisation's state, at its last snapshot",
             ["org", "what"])
BROKEN = Gauge("storepulse_flow_unreadable_state", "1 for an organisation whose recovery state could not be read: its "
               "figures are stopped until it is rebuilt (docs/operations.md)", ["org"])
ACTIONS = Counter("storepulse_flow_actions_total", "Automation actions released to the outbox (one per channel); a "
                  "replay after a restart counts its copies again, the outbox keeps one", ["trigger"])
OUTBOX_SECONDS = Counter("storepulse_flow_outbox_seconds_total", "Time spent putting actions into the outbox")
SEGMENT_EVALUATIONS = Counter("storepulse_flow_segment_evaluations_total",
                              "Segment rules evaluated for a customer (only those an event or a timer touches)")
SEGMENT_CHANGES = Counter("storepulse_flow_segment_changes_total", "Customers entering or leaving a segment")
SEGMENT_WITHDRAWN = Counter("storepulse_flow_segment_withdrawn_total",
                            "Segment changes withdrawn (superseded) because an event arrived out of order")
SEGMENT_SECONDS = Counter("storepulse_flow_segment_evaluation_seconds_total", "Time spent evaluating segment rules")
SEGMENT_TIMERS = Gauge("storepulse_flow_segment_timers_pending", "Segment timers pending (one per customer at most)",
                       ["org"])
SEGMENT_UNCONVERTED = Counter("storepulse_flow_segment_unconverted_total",
                              "Order or refund amounts in another currency than the organisation's, counted as 0 by "
                              "the segments because the dataflow has no exchange rates")
