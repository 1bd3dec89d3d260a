"""Staff passwords: the policy a new one must meet, and argon2id hashing off the event loop."""

from __future__ import annotations

import asyncio
import secrets
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from spoc_platform.weak_secrets import (
    MIN_PASSWORD_LENGTH,
    WELL_KNOWN_PASSWORDS,
    published_marker,
)

MAX_PASSWORD_LENGTH = 256  # argon2 takes any length; this bounds the work a request can ask for

# Stems at the top of every breached-password list, which people pad to the length asked
# ("password1234", "Welcome2026!"): a stem plus digits and symbols is no better than the stem.
COMMON_STEMS = WELL_KNOWN_PASSWORDS | {
    "abc",
    "abcdef",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "letmein",
    "qwertyuiop",
    "servicedesk",
    "helpdesk",
    "summer",
    "winter",
    "spring",
    "autumn",
    "sunshine",
    "superman",
    "trustno1",
    "welcome",
    "1q2w3e4r",
    "1qaz2wsx",
    "asdfghjkl",
    "zxcvbnm",
}
_PADDING = "0123456789!@#$%^&*()-_=+.,?~ "


def password_problem(password: str, *, identities: tuple[str, ...] = ()) -> str | None:
    """Why `password` may not be a staff member's password, or None. `identities` are the
    account's own id, name and e-mail address, which a guesser tries first."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    if any(ch < " " or ch == "\x7f" for ch in password):
        # Sign-in refuses them (api/session.py): a password holding one could never be used.
        return "a password may not contain control characters"
    lowered = password.lower()
    stem = lowered.strip(_PADDING)
    if stem in COMMON_STEMS or len(set(lowered)) < 4:
        return "this password is among the first an attacker tries"
    marker = published_marker(password)
    if marker:
        return f"this password is a published placeholder (it contains {marker!r})"
    for identity in identities:
        value = identity.strip().lower()
        local = value.split("@", 1)[0]
        if value and (lowered == value or (len(local) >= 4 and local in lowered)):
            return "a password may not be built from the account's own name or address"
    return None


class Passwords:
    """argon2id with the desk's cost parameters. Hashing takes tens of milliseconds of CPU
    by design: it runs in a worker thread, so the event loop keeps serving meanwhile."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, at_once: int = 4
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Anyone may ask for a verification (a sign-in): at most `at_once` run, the rest wait,
        # so a flood costs the desk a few cores' time and memory, not all of it.
        self._slots = asyncio.Semaphore(at_once)

    @cached_property
    def _dummy_hash(self) -> str:
        # Verified against when there is no account or no password, so the answer takes as
        # long as for a wrong password and the timing does not tell which addresses exist.
        return self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; always spends one verification's time (None: no
        account or no password, checked against a dummy hash all the same)."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            matches = self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return matches and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
