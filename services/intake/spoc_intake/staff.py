"""Staff accounts' use cases: create, change, set a password or an availability, sync from the
desk file; each change commits with its staff.updated event, so routing hears of it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from spoc_contracts import StaffUpdated
from spoc_intake import staff_repository, tokens
from spoc_intake.callers import Caller
from spoc_intake.passwords import MAX_PASSWORD_LENGTH, Passwords, password_problem
from spoc_intake.schemas import (
    NO_CONTROLS_PATTERN,
    EmailAddress,
    GroupId,
    OneLine,
    StaffId,
    email_key,
)
from spoc_intake.settings import IntakeSettings
from spoc_intake.staff_sign_in import StaffSignIn
from spoc_platform.db import is_outage, utc_now
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_platform.weak_secrets import MIN_PASSWORD_LENGTH
from spoc_platform.web import ApiError

log = logging.getLogger(__name__)

StaffRole = Literal["agent", "manager", "admin"]
# Lowest first: a change down this list takes the account's tokens away (tokens.py).
ROLE_RANK: dict[str, int] = {"agent": 0, "manager": 1, "admin": 2}
# On shift for new work, away for a while, or off: the person's own say (or an admin's), told
# to routing on staff.updated. Not the desk file's: a restart must not put anyone back on shift.
Availability = Literal["available", "away", "off"]
# Stripped, 1 to 200 characters, no control characters (PostgreSQL cannot store a NUL).
PersonName = OneLine
# Each group once, in the order given (the first is where routing places a new agent).
Groups = Annotated[
    list[GroupId], Field(max_length=50), AfterValidator(lambda ids: list(dict.fromkeys(ids)))
]
# The rules password_problem enforces that a schema can say (a common password it cannot).
Password = Annotated[
    str,
    StringConstraints(max_length=MAX_PASSWORD_LENGTH),
    Field(json_schema_extra={"minLength": MIN_PASSWORD_LENGTH, "pattern": NO_CONTROLS_PATTERN}),
]


class StaffEntry(BaseModel):
    """One person in the desk file's `intake: staff:` list (see desk.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: StaffId
    name: PersonName
    email: EmailAddress
    role: StaffRole = "agent"
    groups: Groups = Field(default_factory=list)


class StaffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StaffId
    name: PersonName
    email: EmailAddress
    role: StaffRole
    groups: Groups = Field(default_factory=list)
    # Strict: true or false as the schema says, not 0, 1 or "yes".
    active: StrictBool = True
    availability: Availability = "available"
    # Optional: without one the person cannot sign in until it is set.
    password: Password | None = None


class StaffUpdate(BaseModel):
    """Only the fields given change; null is the same as absent."""

    model_config = ConfigDict(extra="forbid")

    name: PersonName | None = None
    email: EmailAddress | None = None
    role: StaffRole | None = None
    groups: Groups | None = None
    active: StrictBool | None = None
    availability: Availability | None = None


class AvailabilitySet(BaseModel):
    """The person themselves, or an admin for anyone."""

    model_config = ConfigDict(extra="forbid")

    availability: Availability


class PasswordSet(BaseModel):
    """An admin sets anyone's password; a member changing their own gives the current one."""

    model_config = ConfigDict(extra="forbid")

    password: Password
    current_password: Password | None = None


@dataclass(frozen=True)
class StaffProfile:
    id: str
    name: str
    email: str
    role: str
    groups: list[str]
    active: bool
    availability: str
    has_password: bool
    locked_until: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> StaffProfile:
        return cls(
            id=row.id,
            name=row.name,
            email=row.email,
            role=row.role,
            groups=list(row.groups),
            active=row.active,
            availability=row.availability,
            has_password=row.password_hash is not None,
            locked_until=row.locked_until,
        )


def _not_found(account_id: str) -> ApiError:
    return ApiError(404, "staff_not_found", f"no staff account {account_id!r}")


def _email_taken() -> ApiError:
    return ApiError(
        409,
        "email_taken",
        "another staff account has this e-mail address",
        [{"field": "email", "message": "already used by another account", "type": "email_taken"}],
    )


def _weak_password(problem: str) -> ApiError:
    return ApiError(
        422,
        "weak_password",
        problem,
        [{"field": "password", "message": problem, "type": "weak_password"}],
    )


class StaffService:
    def __init__(
        self, unit_of_work: UnitOfWorkFactory, passwords: Passwords, sign_in: StaffSignIn
    ) -> None:
        self._unit_of_work = unit_of_work
        self._passwords = passwords
        self._sign_in = sign_in

    async def list(self) -> list[StaffProfile]:
        async with self._unit_of_work.engine.connect() as conn:
            return [StaffProfile.of(row) for row in await staff_repository.list_accounts(conn)]

    async def get(self, account_id: str) -> StaffProfile:
        async with self._unit_of_work.engine.connect() as conn:
            row = await staff_repository.get_account(conn, account_id)
        if row is None:
            raise _not_found(account_id)
        return StaffProfile.of(row)

    async def create(self, data: StaffCreate) -> StaffProfile:
        password_hash = None
        if data.password is not None:
            password_hash = await self._checked_hash(
                data.password, (data.id, data.name, data.email)
            )
        now = utc_now()
        try:
            async with self._unit_of_work() as uow:
                created = await staff_repository.insert_account(
                    uow.conn,
                    id=data.id,
                    name=data.name,
                    email=data.email,
                    email_key=email_key(data.email),
                    role=data.role,
                    groups=data.groups,
                    active=data.active,
                    availability=data.availability,
                    password_hash=password_hash,
                    failed_attempts=0,
                    locked_until=None,
                    created_at=now,
                    updated_at=now,
                )
                if not created:
                    raise ApiError(409, "staff_exists", f"staff account {data.id!r} exists")
                profile = await self._published(uow, data.id)
        except IntegrityError as error:
            raise _email_taken() from error
        return profile

    async def update(self, account_id: str, data: StaffUpdate) -> StaffProfile:
        changes: dict[str, Any] = data.model_dump(exclude_none=True)
        if not changes:
            return await self.get(account_id)  # nothing to change, nothing to tell routing
        if "email" in changes:
            changes["email_key"] = email_key(changes["email"])
        try:
            async with self._unit_of_work() as uow:
                admins: list[str] = []
                if "role" in changes or "active" in changes:
                    # Before reading the account: a concurrent demotion waits for this one to
                    # commit, then counts the admins as they are (PostgreSQL; SQLite has one
                    # writer).
                    admins = await staff_repository.lock_active_admins(uow.conn)
                row = await staff_repository.get_account(uow.conn, account_id)
                if row is None:
                    raise _not_found(account_id)
                still_admin = changes.get("role", row.role) == "admin" and changes.get(
                    "active", row.active
                )
                if row.role == "admin" and row.active and not still_admin:
                    if not [admin for admin in admins if admin != account_id]:
                        raise ApiError(
                            409,
                            "last_admin",
                            "this is the desk's last active admin: make another admin first",
                        )
                await staff_repository.update_account(
                    uow.conn, account_id, updated_at=utc_now(), **changes
                )
                if changes.get("active") is False:
                    # Signed out everywhere at once, not at their sessions' idle end.
                    await staff_repository.delete_sessions_of(uow.conn, account_id)
                await _revoke_tokens_if_reduced(uow, row, changes)
                profile = await self._published(uow, account_id)
        except IntegrityError as error:
            raise _email_taken() from error
        return profile

    async def set_password(self, account_id: str, data: PasswordSet, *, caller: Caller) -> None:
        """The member themselves (with their current password), or an admin for anyone. Every
        other session of the account ends: a password change is how one shuts out a thief."""
        own = caller.is_staff and caller.subject_id == account_id
        if not own and caller.role != "admin":
            raise ApiError(403, "forbidden", "only an admin may set another's password")
        async with self._unit_of_work.engine.connect() as conn:
            row = await staff_repository.get_account(conn, account_id)
        if row is None:
            raise _not_found(account_id)
        if own:
            if data.current_password is None:
                raise ApiError(
                    422,
                    "current_password_required",
                    "give your current password to change it",
                    [
                        {
                            "field": "current_password",
                            "message": "required to change your own password",
                            "type": "missing",
                        }
                    ],
                )
            if not await self._sign_in.check_password(row, data.current_password):
                raise ApiError(403, "wrong_password", "the current password is not right")
        new_hash = await self._checked_hash(data.password, (row.id, row.name, row.email))
        keep = None
        if own and caller.credential_id is not None:
            keep = self._sign_in.session_id_of(caller)
        async with self._unit_of_work.engine.begin() as conn:
            await staff_repository.update_account(
                conn,
                account_id,
                password_hash=new_hash,
                failed_attempts=0,
                locked_until=None,
                updated_at=utc_now(),
            )
            await staff_repository.delete_sessions_of(conn, account_id, keep=keep)

    async def set_availability(
        self, account_id: str, data: AvailabilitySet, *, caller: Caller
    ) -> StaffProfile:
        """The member themselves (any staff role), or an admin for anyone. Only a change is
        published: the value the account has already is answered as it is, and routing hears
        nothing new."""
        own = caller.is_staff and caller.subject_id == account_id
        if not own and caller.role != "admin":
            raise ApiError(403, "forbidden", "only an admin may set another's availability")
        profile: StaffProfile | None = None
        async with self._unit_of_work() as uow:
            if await staff_repository.change_availability(
                uow.conn, account_id, data.availability, utc_now()
            ):
                profile = await self._published(uow, account_id)
        # Unchanged, or no such account (get's 404 then).
        return profile or await self.get(account_id)

    async def sync_desk(self, staff: Sequence[StaffEntry]) -> None:
        """The desk file's people exist with its names, addresses, roles and groups. Passwords,
        the active flag and availability are left alone: a restart must not undo an admin's
        deactivation, nor put someone who is off back on shift.
        Accounts the file does not name (made through the API) are left as they are."""
        for entry in staff:
            try:
                await self._sync_one(entry)
            except IntegrityError:
                log.error(
                    "desk file: staff %s has an e-mail address another account holds; skipped",
                    entry.id,
                )
            except Exception as error:
                if not is_outage(error):
                    raise
                # Not a reason to keep the front door shut: the accounts are brought in line
                # at the next start.
                log.warning("desk file's staff not synced, the database is unreachable: %r", error)
                return

    async def _sync_one(self, entry: StaffEntry) -> None:
        now = utc_now()
        values = {
            "name": entry.name,
            "email": entry.email,
            "email_key": email_key(entry.email),
            "role": entry.role,
            "groups": entry.groups,
        }
        async with self._unit_of_work() as uow:
            row = await staff_repository.get_account(uow.conn, entry.id)
            if row is None:
                await staff_repository.insert_account(
                    uow.conn,
                    id=entry.id,
                    active=True,
                    password_hash=None,
                    failed_attempts=0,
                    locked_until=None,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            elif all(getattr(row, key) == value for key, value in values.items()):
                return  # unchanged: no event on every start
            else:
                await staff_repository.update_account(uow.conn, entry.id, updated_at=now, **values)
                await _revoke_tokens_if_reduced(uow, row, values)
            await self._published(uow, entry.id)

    async def _checked_hash(self, password: str, identities: Sequence[str]) -> str:
        problem = password_problem(password, identities=tuple(identities))
        if problem:
            raise _weak_password(problem)
        return await self._passwords.hash(password)

    async def _published(self, uow: UnitOfWork, account_id: str) -> StaffProfile:
        """The account as committed, and its staff.updated in the same transaction."""
        row = await staff_repository.get_account(uow.conn, account_id)
        if row is None:
            raise _not_found(account_id)
        await uow.publish(
            StaffUpdated(
                id=row.id,
                name=row.name,
                email=row.email,
                role=row.role,
                groups=tuple(row.groups),
                active=row.active,
                updated_at=row.updated_at,
                availability=row.availability,
            ),
            ticket_id=None,
        )
        return StaffProfile.of(row)


async def _revoke_tokens_if_reduced(
    uow: UnitOfWork, row: Row[Any], changes: dict[str, Any]
) -> None:
    """An account deactivated or given a lower role loses its bearer tokens in the same unit
    of work, each revocation published (routing and sla drop them too): a token minted for
    the old role must not outlive it there."""
    deactivated = row.active and changes.get("active") is False
    lowered = ROLE_RANK[changes.get("role", row.role)] < ROLE_RANK[row.role]
    if deactivated or lowered:
        await tokens.revoke_tokens_of(uow, row.id)


def build_staff(
    settings: IntakeSettings, unit_of_work: UnitOfWorkFactory
) -> tuple[StaffService, StaffSignIn]:
    """The staff use cases and sign-in on the desk's argon2 cost: for the service's composition
    root and for `spoc staff`, which works on the same database."""
    passwords = Passwords(
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
        at_once=settings.password_checks_at_once,
    )
    sign_in = StaffSignIn(unit_of_work.engine, passwords, settings)
    return StaffService(unit_of_work, passwords, sign_in), sign_in
