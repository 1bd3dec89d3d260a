"""Events published by intake about bearer tokens, so routing and sla can honour them alone."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import Field

from spoc_contracts.envelope import Event


class TokenIssued(Event):
    """A bearer token now exists: its SHA-256 (never the token), its role and expiry. Also
    re-published for every live token when intake starts and every few minutes after, so a
    consumer with an empty table, or one that missed an issue, catches up; a consumer keeps it
    idempotently and never lets it undo a revocation."""

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
    token_issued; the consumer keeps a tombstone for that case. Re-published every few minutes
    for every revoked token not yet expired, so a revocation lost on the way still arrives."""

    TYPE = "credential.token_revoked"
    VERSION = 1

    token_id: uuid.UUID
    token_hash: str
    revoked_at: datetime


class CredentialFeedHeartbeat(Event):
    """Intake's token feed was alive at `at`: published every ~20 s, so a consumer that has not
    heard one for a minute knows a revocation may be held up and honours no token. With
    `live_tokens`, a consumer that holds more tokens live than intake does (a revocation
    dead-lettered on the way) knows it too, and honours none until it has caught up. With
    `live_digest`, so does one that holds a different set of live tokens, even of the same size
    (a revocation lost and an issue missed cancel out in a count, not in a digest)."""

    TYPE = "credential.heartbeat"
    VERSION = 1

    at: datetime
    # How many tokens intake honoured at `at` (neither revoked nor expired then). A count of
    # live tokens, not of revocations: a consumer that started after a revocation never hears
    # of it (only live tokens are announced again), and must not count itself behind for it.
    # None from an intake that predates the field.
    live_tokens: int | None = Field(default=None, ge=0)
    # `live_token_digest` of the ids of those same tokens. None from an intake that predates it.
    live_digest: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")


def live_token_digest(token_ids: Iterable[uuid.UUID]) -> str:
    """The XOR of every id's SHA-256, as hex: the same for the same set in any order, so intake
    and a consumer each compute it over their own rows and compare. Hashed first, so that ids
    with shared bits (a UUID's version) cannot cancel out."""
    digest = 0
    for token_id in token_ids:
        digest ^= int.from_bytes(hashlib.sha256(token_id.bytes).digest(), "big")
    return f"{digest:064x}"
