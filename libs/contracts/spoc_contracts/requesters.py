"""Events published by intake about requesters themselves, not about one ticket."""

from __future__ import annotations

from datetime import datetime

from spoc_contracts.envelope import Event


class RequesterSignInRequested(Event):
    """A requester known to the desk asked for a one-time sign-in link: notify mails it.

    Published without a ticket_id (it concerns every ticket of the address). Only known
    addresses (with at least one ticket) get one; the caller is told the same either way."""

    TYPE = "requester.sign_in_requested"
    VERSION = 1

    email: str
    # The language of the requester's latest ticket, for the mail; None if they gave none.
    locale: str | None = None
    # The link's one-time token, sealed to notify's public key (libsodium sealed box, base64),
    # as ticket.created seals the access key: only notify can turn it into a link.
    link_token_sealed: str
    # After this the link signs nobody in: a mail that could only go out later is not sent.
    expires_at: datetime
