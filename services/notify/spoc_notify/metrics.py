"""Notify's own Prometheus series."""

from prometheus_client import Counter

deliveries = Counter(
    "spoc_notify_deliveries_total",
    "Delivery attempts by kind, channel and outcome.",
    ["kind", "channel", "outcome"],
)
for _outcome in ("sent", "retry", "failed"):
    deliveries.labels("acknowledgement", "email", _outcome)
