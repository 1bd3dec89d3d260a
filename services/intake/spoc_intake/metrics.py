"""Intake's own Prometheus series."""

from typing import get_args

from prometheus_client import Counter

from spoc_intake.schemas import Channel, TicketType

tickets_created = Counter(
    "spoc_intake_tickets_created_total",
    "Tickets accepted, by channel and type.",
    ["channel", "type"],
)
idempotent_replays = Counter(
    "spoc_intake_idempotent_replays_total", "Requests answered from an earlier Idempotency-Key."
)
for _channel in get_args(Channel):
    for _type in get_args(TicketType):
        tickets_created.labels(_channel, _type)
