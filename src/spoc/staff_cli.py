"""`spoc staff create|set-password|set-availability|list`: staff accounts straight on intake's
database, for the first admin of a new desk (after that, the admin API does the same): the
embedded default's (`--data-dir`) or SPOC_INTAKE_DATABASE_URL's, migrated (`spoc migrate
intake`). Changes publish staff.updated through intake's outbox, so routing hears of them once
intake runs."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc.intake_database import DataDirOption, intake_settings, on_intake_database
from spoc_intake.callers import Caller
from spoc_intake.models import MESSAGING
from spoc_intake.staff import (
    AvailabilitySet,
    PasswordSet,
    StaffCreate,
    StaffService,
    build_staff,
)
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWorkFactory
from spoc_platform.web import ApiError

staff = typer.Typer(help="Staff accounts on intake's database: the first admin of a new desk.")

# Who `spoc staff set-password` and `set-availability` act as: whoever can run them holds the
# database already.
COMMAND_LINE = Caller(role="admin", name="spoc staff (command line)")


class StaffRole(StrEnum):
    """The roles a staff account may have (an Enum: every supported Typer reads one)."""

    agent = "agent"
    manager = "manager"
    admin = "admin"


class Availability(StrEnum):
    """Whether a person is on shift for new work (spoc_intake.staff.Availability)."""

    available = "available"
    away = "away"
    off = "off"


T = TypeVar("T")


def _run(data_dir: Path | None, work: Callable[[StaffService], Awaitable[T]]) -> T:
    settings = intake_settings(data_dir)

    async def on_engine(engine: AsyncEngine) -> T:
        service, _ = build_staff(settings, UnitOfWorkFactory(engine, MESSAGING, "intake"))
        return await work(service)

    try:
        return on_intake_database(settings, on_engine, command="spoc staff")
    except ApiError as error:
        typer.echo(f"spoc staff: {error.message}", err=True)
        raise typer.Exit(1) from error


def _invalid(error: ValidationError) -> typer.Exit:
    for problem in error.errors(include_input=False, include_url=False):
        field = ".".join(map(str, problem["loc"])) or "input"
        typer.echo(f"spoc staff: {field}: {problem['msg']}", err=True)
    return typer.Exit(2)


@staff.command("create")
def create(
    id: Annotated[str, typer.Option("--id", help="The id routing knows the agent by, e.g. sara.")],
    name: Annotated[str, typer.Option(help="The person's name, as requesters see it.")],
    email: Annotated[str, typer.Option(help="The address they sign in with.")],
    role: Annotated[StaffRole, typer.Option(help="What they may do.")],
    group: Annotated[
        list[str] | None, typer.Option("--group", help="A group id; repeat for several.")
    ] = None,
    availability: Annotated[
        Availability, typer.Option(help="On shift for new work, away for a while, or off.")
    ] = Availability.available,
    data_dir: DataDirOption = None,
) -> None:
    """Create a staff account (without a password: set one with `spoc staff set-password`)."""
    try:
        data = StaffCreate(
            id=id,
            name=name,
            email=email,
            role=role.value,
            groups=group or [],
            availability=availability.value,
        )
    except ValidationError as error:
        raise _invalid(error) from error
    profile = _run(data_dir, lambda service: service.create(data))
    where = f" --data-dir {data_dir}" if data_dir is not None else ""
    typer.echo(
        f"created {profile.id} ({profile.role}); set a password: "
        f"spoc staff set-password {id}{where}"
    )


@staff.command("set-password")
def set_password(
    id: Annotated[str, typer.Argument(help="The staff account's id.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Set a staff member's password (asked twice, never echoed); their sessions end."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        data = PasswordSet(password=password)
    except ValidationError as error:
        raise _invalid(error) from error
    _run(data_dir, lambda service: service.set_password(id, data, caller=COMMAND_LINE))
    typer.echo(f"password set for {id}")


@staff.command("set-availability")
def set_availability(
    id: Annotated[str, typer.Argument(help="The staff account's id.")],
    availability: Annotated[
        Availability, typer.Argument(help="On shift for new work, away for a while, or off.")
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Set whether a staff member is available, away or off; routing hears of a change."""
    data = AvailabilitySet(availability=availability.value)
    profile = _run(
        data_dir, lambda service: service.set_availability(id, data, caller=COMMAND_LINE)
    )
    typer.echo(f"{profile.id} is {profile.availability}")


@staff.command("list")
def list_staff(data_dir: DataDirOption = None) -> None:
    """Every staff account: id, role, state (away or off when so), address, name and groups."""
    for p in _run(data_dir, lambda service: service.list()):
        state = "active" if p.active else "inactive"
        if p.availability != "available":
            state += f", {p.availability}"
        if not p.has_password:
            state += ", no password"
        if p.locked_until is not None and p.locked_until > utc_now():
            state += f", locked until {p.locked_until:%Y-%m-%d %H:%M} UTC"
        groups = ",".join(p.groups) or "-"
        typer.echo(f"{p.id}\t{p.role}\t{state}\t{p.email}\t{p.name}\t{groups}")
