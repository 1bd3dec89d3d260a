"""Notify's own Prometheus series."""

from prometheus_client import Counter

deliveries = Counter(
    "spoc_notify_deliveries_total",
    "Delivery attempts by kind, channel and outcome.",
    ["kind", "channel", "outcome"],
)
# What notify delivers, on which channel, and how an attempt can end (see dispatcher.py).
KINDS = (("acknowledgement", "email"),)
OUTCOMES = ("sent", "retry", "failed", "lost_lease")

# Every series at zero from the start: one born at its first increment makes rate() miss the
# first burst after every start.
for _kind, _channel in KINDS:
    for _outcome in OUTCOMES:
        deliveries.labels(_kind, _channel, _outcome)
