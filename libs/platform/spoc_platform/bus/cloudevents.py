"""An event's CloudEvents attributes, as AMQP headers beside the unchanged envelope.

CloudEvents' AMQP binding (binary mode) carries the attributes as application properties named
`cloudEvents:<attribute>`; RabbitMQ 4 hands an AMQP 0-9-1 message's headers to AMQP 1.0
consumers as exactly those. So a CloudEvents-aware consumer (an SDK, a bridge, an event router)
can route and trace Spoc's events without knowing the envelope, whose `data` is then the whole
envelope, while Spoc's consumers read the body as before and ignore the headers.
Only the attributes that mean the same as an envelope field are given:

    id       envelope id            type     envelope type ("ticket.created")
    source   envelope source        time     envelope occurred_at (RFC 3339)
    subject  envelope ticket_id     specversion  "1.0"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PREFIX = "cloudEvents:"
SPEC_VERSION = "1.0"

# Envelope field → CloudEvents attribute; the first four are required by both.
_REQUIRED = {"id": "id", "type": "type", "source": "source", "occurred_at": "time"}
_OPTIONAL = {"ticket_id": "subject"}


def cloud_event_headers(body: bytes) -> dict[str, Any]:
    """The headers for an envelope; none for a body that is not one (the bus carries any bytes,
    and a message without the attributes is simply not a CloudEvent)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(envelope, dict):
        return {}
    attributes = {"specversion": SPEC_VERSION}
    for field, attribute in _REQUIRED.items():
        value = envelope.get(field)
        if not isinstance(value, str) or not value:
            return {}
        attributes[attribute] = value
    for field, attribute in _OPTIONAL.items():
        value = envelope.get(field)
        if isinstance(value, str) and value:
            attributes[attribute] = value
    return {PREFIX + name: value for name, value in attributes.items()}


def cloud_event_headers_of(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The CloudEvents headers a received message carries, to keep on a copy of it."""
    return {k: v for k, v in (headers or {}).items() if k.startswith(PREFIX)}
