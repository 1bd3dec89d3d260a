"""Intake's database for the operator commands (`spoc staff`, `spoc token`): the embedded
default's data folder (`--data-dir`), or SPOC_INTAKE_DATABASE_URL as `spoc serve intake` has it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake.settings import IntakeSettings
from spoc_platform.db import create_engine

T = TypeVar("T")

# The embedded default keeps intake's database under this name in its data folder (spoc.embedded).
EMBEDDED_INTAKE_FILE = "intake.sqlite3"

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        help="The embedded default's data folder (as given to `spoc up`); without it, intake's "
        "database is SPOC_INTAKE_DATABASE_URL.",
        show_default=False,
    ),
]


def intake_settings(data_dir: Path | None) -> IntakeSettings:
    """Intake's settings from the environment; with a data folder, its database is the embedded
    default's (password cost and the rest still come from SPOC_INTAKE_*, as for `spoc up`)."""
    from pydantic import ValidationError

    if data_dir is not None and not (data_dir / EMBEDDED_INTAKE_FILE).is_file():
        # Without this, SQLite would create an empty file there and the command would then fail
        # on a missing table: say what is wrong instead.
        typer.echo(
            f"no embedded desk in {data_dir} (no {EMBEDDED_INTAKE_FILE}): give the folder "
            f"`spoc up --data-dir` uses, or start it once there",
            err=True,
        )
        raise typer.Exit(2)
    try:
        if data_dir is not None:
            path = (data_dir / EMBEDDED_INTAKE_FILE).resolve()
            return IntakeSettings(database_url=f"sqlite+aiosqlite:///{path}")
        return IntakeSettings()
    except ValidationError as error:
        # Each problem by name, never the value given: that may be a password.
        problems = "\n".join(
            f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        )
        typer.echo(f"intake: invalid settings (environment SPOC_INTAKE_*):\n{problems}", err=True)
        raise typer.Exit(2) from error


def on_intake_database(
    settings: IntakeSettings, work: Callable[[AsyncEngine], Awaitable[T]], *, command: str
) -> T:
    """Runs `work` on one connection to intake's database; a database that refuses (down, not
    migrated) is a one-line message and exit status 1, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    async def run() -> T:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DBAPIError as error:
        typer.echo(
            f"{command}: intake's database refused ({error.orig.__class__.__name__}: "
            f"{error.orig}); is it reachable and migrated (`spoc migrate intake`)?",
            err=True,
        )
        raise typer.Exit(1) from error
    except OSError as error:
        # asyncpg's refused or timed-out connection is no DBAPIError: still one line, not a trace.
        typer.echo(f"{command}: intake's database is unreachable ({error})", err=True)
        raise typer.Exit(1) from error
