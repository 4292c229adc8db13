"""Prometheus metrics of the notifier. Labels are channel kinds, outcomes and configured ids only."""

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("storepulse_notifier_deliveries_total",
                     "Deliveries that reached a final state, by channel kind and outcome (delivered, dead, cancelled)",
                     ["kind", "outcome"])
ATTEMPTS = Counter("storepulse_notifier_attempts_total",
                   "Delivery attempts by channel kind and result (delivered, retry, dead, gone, cancelled)", ["kind", "result"])
ATTEMPT_SECONDS = Histogram("storepulse_notifier_attempt_seconds", "Time of one attempt (request to answer)", ["kind"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15))
FIRED_TO_DELIVERED = Histogram(
    "storepulse_notifier_fired_to_delivered_seconds",
    "From the trigger firing (the action's fired_at) to the receiver's answer of the attempt that delivered it",
    ["kind"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36_000, 86_400, 172_800))
UNRECORDED = Histogram(
    "storepulse_notifier_answer_to_record_seconds",
    "From a receiver's answer to the durable record of the attempt: a crash within it repeats the attempt "
    "(harmless where the delivery id dedupes; for Slack, the duplicate window)",
    ["kind"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15))
PENDING = Gauge("storepulse_notifier_pending", "Deliveries pending in the outbox (waiting, due or being attempted)")
OLDEST_PENDING_AGE = Gauge("storepulse_notifier_oldest_pending_age_seconds",
                           "Age of the oldest pending delivery (since its trigger fired); 0 when none is pending")
CHANNEL_DISABLED = Gauge("storepulse_notifier_channel_disabled",
                         "1 while a channel is disabled (its receiver answered 410 Gone)", ["org", "channel"])
