"""Staff sign-in on SQLite and PostgreSQL: the session cookie, its server-side row, the same
401 for every refusal, lockout with back-off, timeouts, sign-out and CSRF."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from spoc_intake.app import create_app
from spoc_intake.callers import Caller
from spoc_intake.models import StaffAccount, StaffSession
from spoc_intake.staff import PasswordSet, StaffCreate, StaffUpdate
from spoc_intake.staff_sign_in import SESSION_COOKIE
from spoc_platform.db import utc_now
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration

CHEAP_HASHING = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}
PASSWORD = "correct horse battery staple"
SAME_SITE = {"Origin": "http://intake"}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, **CHEAP_HASHING) as running:
        yield running


def client_of(intake: ServiceUnderTest, base_url: str = "http://intake") -> httpx.AsyncClient:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(intake) as http:
        yield http


async def add_staff(
    intake: ServiceUnderTest, id: str = "sara", password: str | None = PASSWORD, **changes: Any
) -> None:
    values: dict[str, Any] = {
        "id": id,
        "name": "Sara Ahmadi",
        "email": f"{id}@example.org",
        "role": "agent",
        "groups": ["service-desk"],
        "password": password,
    }
    values.update(changes)
    await intake.container.staff.create(StaffCreate(**values))


async def sign_in(
    client: httpx.AsyncClient, email: str = "sara@example.org", password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/v1/session", json={"email": email, "password": password})


async def account(intake: ServiceUnderTest, id: str = "sara") -> Any:
    async with intake.runtime.engine.connect() as conn:
        return (await conn.execute(select(StaffAccount).where(StaffAccount.id == id))).one()


async def sessions(intake: ServiceUnderTest) -> list[Any]:
    async with intake.runtime.engine.connect() as conn:
        return list((await conn.execute(select(StaffSession))).all())


async def age_sessions(intake: ServiceUnderTest, **values: Any) -> None:
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(update(StaffSession).values(**values))


async def test_signing_in_sets_a_strict_httponly_cookie_and_keeps_only_its_hash(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    answer = await sign_in(client, email="  SARA@Example.org ")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": "sara",
        "role": "agent",
        "name": "Sara Ahmadi",
        "email": "sara@example.org",
        "groups": ["service-desk"],
    }
    assert answer.headers["cache-control"] == "no-store"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in development
    token = client.cookies[SESSION_COOKIE]
    [row] = await sessions(intake)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash

    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["id"] == "sara" and me.json()["role"] == "agent"


async def test_over_https_the_cookie_is_secure(intake: ServiceUnderTest) -> None:
    await add_staff(intake)
    async with client_of(intake, "https://intake") as http:
        answer = await sign_in(http)
    assert answer.status_code == 200
    assert "Secure" in answer.headers["set-cookie"]


async def test_every_refusal_is_the_same_401(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await add_staff(intake, id="gone", email="gone@example.org", active=False)
    await add_staff(intake, id="new", email="new@example.org", password=None)

    answers = [
        await sign_in(client, email="nobody@example.org"),
        await sign_in(client, password=PASSWORD + "!"),
        await sign_in(client, email="gone@example.org"),
        await sign_in(client, email="new@example.org", password=""),
        await sign_in(client, email="not an address"),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses[:3] == [401, 401, 401] and statuses[4] == 401
    assert statuses[3] == 422  # an empty password is malformed, not a guess
    bodies = {a.text for i, a in enumerate(answers) if i != 3}
    assert len(bodies) == 1 and "sign_in_failed" in bodies.pop()
    assert all(SESSION_COOKIE not in a.headers.get("set-cookie", "") for a in answers)
    assert await sessions(intake) == []
    me = await client.get("/api/v1/me")
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "unauthenticated"  # as the ticket routes say it


async def test_repeated_failures_lock_the_account_with_a_doubling_lock(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    for _ in range(4):
        assert (await sign_in(client, password="wrong guess number x")).status_code == 401
    assert (await account(intake)).locked_until is None
    assert (await sign_in(client, password="wrong guess number 5")).status_code == 401

    locked = await account(intake)
    assert locked.failed_attempts == 5
    assert timedelta(seconds=55) < locked.locked_until - utc_now() <= timedelta(minutes=1)
    # Locked: the right password does not get in, and attempts are not counted.
    refused = await sign_in(client)
    assert refused.status_code == 401 and "sign_in_failed" in refused.text
    assert (await account(intake)).failed_attempts == 5

    # The lock ends; the next failure locks again, for twice as long.
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(update(StaffAccount).values(locked_until=utc_now()))
    assert (await sign_in(client, password="wrong guess number 6")).status_code == 401
    relocked = await account(intake)
    assert timedelta(seconds=115) < relocked.locked_until - utc_now() <= timedelta(minutes=2)

    async with intake.runtime.engine.begin() as conn:
        await conn.execute(update(StaffAccount).values(locked_until=utc_now()))
    assert (await sign_in(client)).status_code == 200
    cleared = await account(intake)
    assert cleared.failed_attempts == 0 and cleared.locked_until is None


async def test_signing_out_ends_the_session_on_the_server(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await sign_in(client)
    token = client.cookies[SESSION_COOKIE]

    out = await client.delete("/api/v1/session", headers=SAME_SITE)
    assert out.status_code == 204
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    assert await sessions(intake) == []
    # The old cookie, replayed, is nobody's.
    client.cookies.set(SESSION_COOKIE, token)
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_an_unsafe_request_on_the_cookie_must_come_from_the_desk_itself(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await sign_in(client)

    for headers in ({}, {"Origin": "http://evil.example"}, {"Referer": "https://evil/x"}):
        refused = await client.delete("/api/v1/session", headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"]["code"] == "cross_site_request"
    assert len(await sessions(intake)) == 1
    # Reading needs no Origin; a Referer from the desk's own pages passes.
    assert (await client.get("/api/v1/me")).status_code == 200
    referer = {"Referer": "http://intake/t/SD-000001"}
    assert (await client.delete("/api/v1/session", headers=referer)).status_code == 204


async def test_another_sites_page_cannot_sign_a_browser_in(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    answer = await client.post(
        "/api/v1/session",
        json={"email": "sara@example.org", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert answer.status_code == 403
    assert await sessions(intake) == []


async def test_a_session_ends_when_idle_and_at_its_absolute_limit(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await sign_in(client)
    idle = intake.container.settings.staff_session_idle_minutes

    await age_sessions(intake, last_seen_at=utc_now() - timedelta(minutes=idle - 2))
    assert (await client.get("/api/v1/me")).status_code == 200
    await age_sessions(intake, last_seen_at=utc_now() - timedelta(minutes=idle + 1))
    assert (await client.get("/api/v1/me")).status_code == 401

    await age_sessions(intake, last_seen_at=utc_now(), expires_at=utc_now())
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_last_seen_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await sign_in(client)
    [first] = await sessions(intake)
    for _ in range(3):
        await client.get("/api/v1/me")
    [unchanged] = await sessions(intake)
    assert unchanged.last_seen_at == first.last_seen_at

    earlier = utc_now() - timedelta(minutes=2)
    await age_sessions(intake, last_seen_at=earlier)
    await client.get("/api/v1/me")
    [touched] = await sessions(intake)
    assert touched.last_seen_at > earlier + timedelta(minutes=1)


async def test_deactivating_an_account_or_changing_its_role_takes_effect_at_once(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    await sign_in(client)
    await intake.container.staff.update("sara", StaffUpdate(role="manager"))
    assert (await client.get("/api/v1/me")).json()["role"] == "manager"

    await intake.container.staff.update("sara", StaffUpdate(active=False))
    assert (await client.get("/api/v1/me")).status_code == 401
    assert await sessions(intake) == []


async def test_changing_ones_password_ends_the_other_sessions(
    intake: ServiceUnderTest,
) -> None:
    await add_staff(intake)
    async with client_of(intake) as laptop, client_of(intake) as phone:
        await sign_in(laptop)
        await sign_in(phone)
        changed = await laptop.put(
            "/api/v1/staff/sara/password",
            json={"current_password": PASSWORD, "password": "a brand new passphrase"},
            headers=SAME_SITE,
        )
        assert changed.status_code == 204, changed.text
        assert (await laptop.get("/api/v1/me")).status_code == 200
        assert (await phone.get("/api/v1/me")).status_code == 401
        assert (await sign_in(phone)).status_code == 401
        assert (await sign_in(phone, password="a brand new passphrase")).status_code == 200


async def test_a_password_hashed_with_older_parameters_is_rehashed_at_sign_in(
    database_url: str,
) -> None:
    async with service("intake", database_url, **CHEAP_HASHING) as old:
        await add_staff(old)
        before = (await account(old)).password_hash
    stronger = {**CHEAP_HASHING, "password_time_cost": 2}
    async with service("intake", database_url, **stronger) as new:
        async with client_of(new) as http:
            assert (await sign_in(http)).status_code == 200
        after = (await account(new)).password_hash
    assert ",t=1," in before and ",t=2," in after
    assert after != before


async def test_the_admin_sets_a_password_the_member_then_signs_in_with(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake, password=None)
    await intake.container.staff.set_password(
        "sara", PasswordSet(password="set by the admin today"), caller=Caller(role="admin")
    )
    assert (await sign_in(client, password="set by the admin today")).status_code == 200


async def test_parallel_guesses_with_the_right_password_among_them_still_lock_the_account(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # Every attempt is counted before its password is checked: thirty guesses at once each
    # take a number, and the right password sent with them finds the account locked.
    await add_staff(intake)
    guesses = [sign_in(client, password=f"wrong guess number {n}") for n in range(30)]
    answers = await asyncio.gather(*guesses, sign_in(client))

    assert [a.status_code for a in answers] == [401] * 31
    assert await sessions(intake) == []
    locked = await account(intake)
    assert locked.failed_attempts == 5  # attempts while locked are not counted
    assert locked.locked_until is not None and locked.locked_until > utc_now()


async def test_the_right_password_alone_after_a_few_failures_clears_the_count(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await add_staff(intake)
    for n in range(4):
        await sign_in(client, password=f"wrong guess number {n}")
    # The fifth attempt would lock on failure, so it locks first; being right, it unlocks.
    assert (await sign_in(client)).status_code == 200
    cleared = await account(intake)
    assert cleared.failed_attempts == 0 and cleared.locked_until is None


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a\u0000b@example.com", "password": "x"},
        {"email": "sara@example.org", "password": "correct\u0000horse"},
        {"email": "sara@example.org\n", "password": "x"},
    ],
)
async def test_control_characters_in_a_sign_in_are_a_422_not_a_500(
    client: httpx.AsyncClient, intake: ServiceUnderTest, body: dict[str, str]
) -> None:
    await add_staff(intake)
    answer = await client.post("/api/v1/session", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert (await account(intake)).failed_attempts == 0


async def test_sign_ins_from_an_untrusted_client_have_a_budget(database_url: str) -> None:
    settings = {"sign_in_rate_limit_per_account": "3/minute", "trusted_networks": ""}
    async with service("intake", database_url, **CHEAP_HASHING, **settings) as intake:
        await add_staff(intake)
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            answers = [await sign_in(http, password=f"wrong {n} guess") for n in range(3)]
            assert [a.status_code for a in answers] == [401] * 3
            refused = await sign_in(http, email="  SARA@example.org")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
            # Refused before the password is looked at: not counted as a guess.
            assert (await account(intake)).failed_attempts == 3
            # Another address still has its own budget.
            assert (await sign_in(http, email="olga@example.org")).status_code == 401
