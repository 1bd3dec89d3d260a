"""Replayable answers to Idempotency-Key requests, kept so that only the client can read them.

The first 201 answer holds the requester's access key. It is stored sealed under a key derived
from the client's Idempotency-Key and found by a separate digest of it, so the table holds
neither the Idempotency-Key nor anything that opens without it. This gives away nothing the API
does not: whoever holds an Idempotency-Key (and the body) can replay the answer over HTTP anyway.
"""

from __future__ import annotations

import json
from typing import Any

from spoc_platform.sealing import SealingError, SecretKeyBox, keyed_digest

_LOOKUP = b"spoc-idem-lookup"
_SEAL = b"spoc-idem-answer"


def answer_digest(idempotency_key: str) -> str:
    return keyed_digest(idempotency_key.encode(), _LOOKUP)


def seal_answer(idempotency_key: str, body: dict[str, Any]) -> str:
    return SecretKeyBox(idempotency_key.encode(), _SEAL).seal(json.dumps(body).encode())


def open_answer(idempotency_key: str, sealed: str) -> dict[str, Any] | None:
    """The stored answer; None if it does not open with this key (then it is not this key's)."""
    try:
        body: dict[str, Any] = json.loads(
            SecretKeyBox(idempotency_key.encode(), _SEAL).open(sealed)
        )
    except SealingError:
        return None
    return body
