"""Prometheus metrics of the read side."""

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("storepulse_ws_clients", "Connected, authenticated WebSocket clients")
PUSHES = Counter("storepulse_ws_pushes_total", "Figure updates offered to WebSocket clients")
RESNAPSHOTS = Counter("storepulse_gateway_resnapshots_total", "Times the change feed was followed again after breaking")
AUTH_FAILURES = Counter("storepulse_ws_auth_failures_total", "WebSocket clients refused at authentication")
STALE = Gauge("storepulse_figures_stale", "1 while an organisation's figures are stale: the dataflow has not reported "
              "catching up with the log for STALE_AFTER_MS (core/freshness.py)", ["org"])
CAUGHT_UP = Gauge("storepulse_figures_caught_up_timestamp_seconds",
                  "When the dataflow last reported an organisation's figures hold everything appended to the log", ["org"])
THROTTLED = Counter("storepulse_api_throttled_total", "Read API requests refused with 429, by the limit hit", ["limit"])
WS_REFUSED = Counter("storepulse_ws_closed_by_limit_total", "WebSocket connections closed by a limit, by the limit hit",
                     ["limit"])
PREVIEWS = Counter("storepulse_segment_previews_total", "Segment previews answered, by path: columns (ws_gateway/preview_index.py) "
                   "or records (the columns not built yet, or a rule they cannot answer)", ["path"])
PREVIEW_BUILD_SECONDS = Gauge("storepulse_segment_preview_build_seconds",
                              "How long the latest build of an organisation's preview columns took", ["org"])
KEPT_SAVES = Counter("storepulse_gateway_kept_parts_saves_total",
                     "Background saves of the read side's kept parts (ws_gateway/kept_file.py), by outcome", ["outcome"])
for _outcome in ("saved", "failed", "unknown"):  # every series from the start: a save adds none later
    KEPT_SAVES.labels(outcome=_outcome)
KEPT_SAVE_SECONDS = Gauge("storepulse_gateway_kept_parts_save_seconds", "How long the latest completed save took")
KEPT_BYTES = Gauge("storepulse_gateway_kept_parts_bytes", "The size of the latest saved file of kept parts")
KEPT_SAVED = Gauge("storepulse_gateway_kept_parts_saved_timestamp_seconds", "When the latest save completed")
KEPT_HELD_SECONDS = Gauge("storepulse_gateway_kept_parts_fork_hold_seconds",
                          "How long requests were held for the latest save's fork")
KEPT_LOAD_SECONDS = Gauge("storepulse_gateway_kept_parts_load_seconds",
                          "How long taking the kept parts at start took (0: no file was taken)")
