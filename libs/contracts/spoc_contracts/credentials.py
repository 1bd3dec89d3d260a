"""Events published by intake about bearer tokens, so routing and sla can honour them alone."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from spoc_contracts.envelope import Event


class TokenIssued(Event):
    """A bearer token now exists: its SHA-256 (never the token), its role and expiry. Also
    re-published for every live token when intake starts, so a consumer with an empty table
    catches up; a consumer keeps it idempotently and never lets it undo a revocation."""

    TYPE = "credential.token_issued"
    VERSION = 1

    token_id: uuid.UUID
    token_hash: str
    role: Literal["integration", "agent", "manager", "admin"]
    # The staff account a staff token acts as, if it names one.
    subject_id: str | None = None
    expires_at: datetime | None = None
    issued_at: datetime


class TokenRevoked(Event):
    """A bearer token was revoked: it authenticates nobody from now on. May arrive before its
    token_issued; the consumer keeps a tombstone for that case."""

    TYPE = "credential.token_revoked"
    VERSION = 1

    token_id: uuid.UUID
    token_hash: str
    revoked_at: datetime


class CredentialFeedHeartbeat(Event):
    """Intake's token feed was alive at `at`: published every ~20 s, so a consumer that has not
    heard one for a minute knows a revocation may be held up and honours no token. With
    `live_tokens`, a consumer that holds more tokens live than intake does (a revocation
    dead-lettered on the way) knows it too, and honours none until it has caught up."""

    TYPE = "credential.heartbeat"
    VERSION = 1

    at: datetime
    # How many tokens intake honoured at `at` (neither revoked nor expired then). A count of
    # live tokens, not of revocations: a consumer that started after a revocation never hears
    # of it (only live tokens are announced again), and must not count itself behind for it.
    # None from an intake that predates the field.
    live_tokens: int | None = Field(default=None, ge=0)
