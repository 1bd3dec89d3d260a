"""Staff passwords: the policy, argon2id hashing and rehashing, and the lockout's back-off."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from spoc_intake.passwords import Passwords, password_problem
from spoc_intake.staff_sign_in import lock_for

pytestmark = pytest.mark.unit

CHEAP = {"time_cost": 1, "memory_kib": 8192, "parallelism": 1}


@pytest.mark.parametrize(
    "password",
    [
        "short-1A!",  # under 12 characters
        "password123",
        "123456789012",  # long enough, and the first thing tried
        "aaaaaaaaaaaaaaaa",  # one character repeated
        "abababababababab",
        "my-example-only-secret",  # a placeholder Spoc publishes
        "change-me-please-now",
        "x" * 257,
        "Password1234!",
        "Welcome2026!!",
        "1234567890123",
    ],
)
def test_weak_and_published_passwords_are_refused(password: str) -> None:
    assert password_problem(password) is not None


def test_a_password_built_from_the_account_itself_is_refused() -> None:
    identities = ("sara", "Sara Ahmadi", "sara.ahmadi@example.org")
    assert password_problem("sara.ahmadi-2026!", identities=identities) is not None
    assert password_problem("Sara Ahmadi 2026", identities=identities) is not None


def test_a_password_with_a_control_character_is_refused() -> None:
    # Sign-in refuses control characters: such a password could never be used.
    assert password_problem("correct horse\tbattery staple") is not None
    assert password_problem("correct horse\x00battery staple") is not None


def test_a_long_unremarkable_password_is_accepted() -> None:
    assert password_problem("correct horse battery staple", identities=("sara",)) is None
    assert password_problem("tO0k-the-l0ng-way-h0me") is None


async def test_hashes_are_argon2id_and_verify_only_the_right_password() -> None:
    passwords = Passwords(**CHEAP)
    stored = await passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert await passwords.verify(stored, "correct horse battery staple")
    assert not await passwords.verify(stored, "correct horse battery stapler")
    assert not await passwords.verify("not a hash", "correct horse battery staple")


async def test_an_account_without_a_hash_never_verifies_whatever_is_given() -> None:
    passwords = Passwords(**CHEAP)
    assert not await passwords.verify(None, "")
    assert not await passwords.verify(None, "correct horse battery staple")


async def test_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    old = await Passwords(**CHEAP).hash("correct horse battery staple")
    stronger = Passwords(time_cost=2, memory_kib=8192, parallelism=1)
    assert stronger.needs_rehash(old)
    assert not Passwords(**CHEAP).needs_rehash(old)
    # The old hash still verifies under the new parameters: that is when it is replaced.
    assert await stronger.verify(old, "correct horse battery staple")


def test_the_lock_starts_at_the_threshold_and_doubles_up_to_an_hour() -> None:
    locks = [lock_for(failures, 5) for failures in range(1, 14)]
    assert locks[:4] == [None] * 4
    assert locks[4:12] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60)]
    assert lock_for(10_000, 5) == timedelta(hours=1)
    assert lock_for(3, 3) == timedelta(minutes=1)


async def test_at_most_the_configured_number_of_verifications_run_at_once() -> None:
    passwords = Passwords(**CHEAP, at_once=2)
    stored = await passwords.hash("correct horse battery staple")
    running, most = 0, 0
    lock = threading.Lock()
    verify = passwords._verify

    def counted(stored_hash: str | None, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for every waiting call to start if it could
        with lock:
            running -= 1
        return verify(stored_hash, password)

    passwords._verify = counted  # type: ignore[method-assign]
    results = await asyncio.gather(*(passwords.verify(stored, f"guess {n}") for n in range(6)))
    assert results == [False] * 6
    assert most == 2
