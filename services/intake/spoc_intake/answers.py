"""Replayable answers to Idempotency-Key requests, kept so that only the client can read them.

An Idempotency-Key is the client's within a scope (see service.idempotency_scope): the caller's
credential, or for an anonymous caller the requester's address, so one caller can neither
replay nor squat another's key. The first 201 answer may hold the requester's access key. It
is stored sealed under a key derived from the scoped Idempotency-Key and found by a separate
digest of it, so the table holds neither the Idempotency-Key nor anything that opens without
it. This gives away nothing the API does not: whoever holds an Idempotency-Key in its scope
(and the body) can replay the answer over HTTP anyway.
"""

from __future__ import annotations

import json
from typing import Any

from spoc_platform.sealing import SealingError, SecretKeyBox, keyed_digest

_LOOKUP = b"spoc-idem-lookup"
_SEAL = b"spoc-idem-answer"
# The scope of work done inside the desk, without an HTTP caller: the key alone, as every key
# was before keys were scoped (answers stored then are still found by it, and only by it).
INTERNAL_SCOPE = ""


def _material(idempotency_key: str, scope: str) -> bytes:
    # NUL cannot occur in a key (visible ASCII only), so no two (scope, key) pairs collide.
    return f"{scope}\0{idempotency_key}".encode() if scope else idempotency_key.encode()


def answer_digest(idempotency_key: str, scope: str = INTERNAL_SCOPE) -> str:
    return keyed_digest(_material(idempotency_key, scope), _LOOKUP)


def seal_answer(idempotency_key: str, body: dict[str, Any], scope: str = INTERNAL_SCOPE) -> str:
    box = SecretKeyBox(_material(idempotency_key, scope), _SEAL)
    return box.seal(json.dumps(body).encode())


def open_answer(
    idempotency_key: str, sealed: str, scope: str = INTERNAL_SCOPE
) -> dict[str, Any] | None:
    """The stored answer; None if it does not open with this key (then it is not this key's)."""
    try:
        body: dict[str, Any] = json.loads(
            SecretKeyBox(_material(idempotency_key, scope), _SEAL).open(sealed)
        )
    except SealingError:
        return None
    return body
