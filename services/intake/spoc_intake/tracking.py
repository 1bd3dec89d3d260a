"""Tracking numbers (SD-000123) and requester access keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

NUMBER_DIGITS = 6


def format_number(prefix: str, sequence: int) -> str:
    return f"{prefix}-{sequence:0{NUMBER_DIGITS}d}"


def parse_number(prefix: str, number: str) -> int | None:
    """The sequence in a tracking number written by a person: case and spaces forgiven.
    ASCII only: in Unicode mode \\d reads other scripts' digits (SD-٢ as SD-000002) and case
    folding reads ſ as s, giving one ticket many names."""
    match = re.fullmatch(
        rf"\s*{re.escape(prefix)}-?([0-9]{{1,12}})\s*", number, re.IGNORECASE | re.ASCII
    )
    return int(match.group(1)) if match else None


def new_access_key() -> str:
    return secrets.token_urlsafe(24)


def hash_access_key(key: str) -> str:
    # The key is 192 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def access_key_matches(key: str | None, stored_hash: str) -> bool:
    if not key:
        return False
    return hmac.compare_digest(hash_access_key(key), stored_hash)
