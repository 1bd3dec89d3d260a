"""Events published by notify: what was delivered to whom, and what could not be."""

from __future__ import annotations

from datetime import datetime

from spoc_contracts.envelope import Event


class NotificationSent(Event):
    TYPE = "notification.sent"
    VERSION = 1

    number: str
    notification_id: str
    kind: str
    channel: str
    recipient: str
    sent_at: datetime


class NotificationFailed(Event):
    TYPE = "notification.failed"
    VERSION = 1

    number: str
    notification_id: str
    kind: str
    channel: str
    recipient: str
    attempts: int
    error: str
