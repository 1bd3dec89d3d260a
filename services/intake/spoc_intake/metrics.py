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

# The front door's refusals (spoc_intake.front_door): labels take fixed values only.
FRONT_DOOR_ACTIONS = ("create", "reply", "sign_in_link", "sign_in")
FRONT_DOOR_SCOPES = ("client", "recipient", "blocked_client", "blocked_recipient")
front_door_refusals = Counter(
    "spoc_intake_front_door_refusals_total",
    "Anonymous requests refused by the rate limits (scope client or recipient) or the block "
    "list (blocked_client, blocked_recipient), by action.",
    ["action", "scope"],
)
for _action in FRONT_DOOR_ACTIONS:
    for _scope in FRONT_DOOR_SCOPES:
        front_door_refusals.labels(_action, _scope)

# The front door's shared rate-limit storage (Redis) failing: each failure let one request
# through uncounted (fail open, spoc_intake.front_door). Zero with the in-process storage.
rate_limit_storage_errors = Counter(
    "spoc_intake_rate_limit_storage_errors_total",
    "Anonymous requests admitted without counting them, because the shared rate-limit storage "
    "failed or did not answer in time.",
)
