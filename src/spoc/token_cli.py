"""`spoc token create|list|revoke`: bearer tokens for scripts and integrations, on intake's
database directly (SPOC_INTAKE_DATABASE_URL, or the embedded default's data folder)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc.intake_database import DataDirOption, intake_settings, on_intake_database
from spoc_intake import tokens
from spoc_intake.models import MESSAGING
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWorkFactory

T = TypeVar("T")

token = typer.Typer(
    help="Bearer tokens for scripts and integrations: shown once, stored hashed.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"(\d{1,5})([dh])")


def parse_expiry(value: str, *, now: datetime) -> datetime | None:
    """`90d`, `12h`, a date (`2027-03-01`: its start, UTC), an ISO date-time with its offset,
    or `never`."""
    text = value.strip().lower()
    if text == "never":
        return None
    if match := _DURATION.fullmatch(text):
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:
            raise ValueError("a token that expires at once is of no use")
        return now + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is no expiry: give 90d, 12h, a date (2027-03-01), a date-time with "
            "its offset, or never"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (e.g. 2027-03-01T09:00+01:00)")
    return moment.astimezone(UTC)


def _on_intake_database(data_dir: Path | None, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    return on_intake_database(intake_settings(data_dir), work, command="spoc token")


def _when(moment: datetime | None, empty: str = "-") -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else empty


@token.command("create")
def create(
    role: Annotated[
        str, typer.Option(help=f"What the token may do: {', '.join(tokens.TOKEN_ROLES)}.")
    ],
    name: Annotated[str, typer.Option(help="Who or what holds it (shown in `spoc token list`).")],
    expires: Annotated[
        str,
        typer.Option(help="90d, 12h, a date (2027-03-01, UTC), a date-time with offset, or never."),
    ] = "90d",
    subject: Annotated[
        str | None,
        typer.Option(help="For a staff role: the staff account it acts as.", show_default=False),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a token and print it once, on standard output alone (details on standard error)."""
    if role not in tokens.TOKEN_ROLES:
        typer.echo(f"--role is one of {', '.join(tokens.TOKEN_ROLES)}, not {role!r}", err=True)
        raise typer.Exit(2)
    try:
        expires_at = parse_expiry(expires, now=utc_now())
    except ValueError as error:
        typer.echo(f"--expires: {error}", err=True)
        raise typer.Exit(2) from error

    async def work(engine: AsyncEngine) -> tokens.IssuedToken:
        # Through intake's outbox: its running relay tells routing and sla.
        return await tokens.create_token(
            UnitOfWorkFactory(engine, MESSAGING, "intake"),
            role=role,
            name=name,
            subject_id=subject,
            expires_at=expires_at,
        )

    try:
        issued = _on_intake_database(data_dir, work)
    except ValueError as error:
        typer.echo(f"token not created: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(
        f"token {issued.id} ({issued.role}, {issued.name!r}, expires "
        f"{_when(issued.expires_at, 'never')}). It is shown now and never again:",
        err=True,
    )
    typer.echo(issued.token)


@token.command("list")
def list_(data_dir: DataDirOption = None) -> None:
    """Every token: id, name, role, subject, created, expires, last used, revoked (never the
    token itself, which is not kept)."""
    rows = _on_intake_database(data_dir, tokens.list_tokens)
    header = ("id", "name", "role", "subject", "created", "expires", "last used", "revoked")
    lines = [header] + [
        (
            str(row.id),
            row.name,
            row.role,
            row.subject_id or "-",
            _when(row.created_at),
            _when(row.expires_at, "never"),
            _when(row.last_used_at),
            _when(row.revoked_at),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@token.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The id `spoc token list` shows.")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a token: it stops working on intake's next request, and on routing's and sla's
    admin APIs within a minute (intake, running, tells them)."""
    try:
        parsed = uuid.UUID(token_id)
    except ValueError as error:
        typer.echo(f"{token_id!r} is not a token id (see `spoc token list`)", err=True)
        raise typer.Exit(2) from error

    async def work(engine: AsyncEngine) -> bool:
        return await tokens.revoke_token(UnitOfWorkFactory(engine, MESSAGING, "intake"), parsed)

    if not _on_intake_database(data_dir, work):
        typer.echo(f"no token {parsed}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {parsed} revoked", err=True)
