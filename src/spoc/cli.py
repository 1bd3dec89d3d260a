"""The `spoc` command: the embedded default, single services, migrations and contracts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Literal, TypedDict

import typer
import uvicorn

from spoc import __version__
from spoc.contracts_cli import contracts
from spoc.desk_check import app as desk
from spoc.keys import keys
from spoc.operator import dead_letters, status_command
from spoc.services import SERVICES, ServiceName
from spoc.staff_cli import staff
from spoc.token_cli import token
from spoc.topology import topology
from spoc_platform.logs import LogLevel, configure_logging
from spoc_platform.settings import ServiceSettings

app = typer.Typer(
    help="Spoc — a single-point-of-contact IT service desk.",
    no_args_is_help=True,
    add_completion=False,
)
# `spoc contracts write|check` (spoc.contracts_cli): the catalogue and released event versions.
app.add_typer(contracts, name="contracts")
# Operators' commands live in spoc.operator: `spoc dead-letters …` and `spoc status`.
app.add_typer(dead_letters, name="dead-letters")
app.command("status")(status_command)
app.add_typer(keys, name="keys")
app.add_typer(topology, name="topology")
app.add_typer(staff, name="staff")
app.add_typer(token, name="token")
# `spoc desk check FILE`: every section of the desk file, and whether they agree.
app.add_typer(desk, name="desk")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"spoc {__version__}")
        raise typer.Exit()


@app.callback()
def _spoc(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of Spoc and exit.",
        ),
    ] = False,
) -> None:
    """Spoc — a single-point-of-contact IT service desk."""


class _UvicornOptions(TypedDict, total=False):
    access_log: bool
    log_config: None
    lifespan: Literal["on"]
    loop: str
    http: str | type[asyncio.Protocol]
    h11_max_incomplete_event_size: int
    proxy_headers: bool
    forwarded_allow_ips: str
    root_path: str
    timeout_keep_alive: int
    limit_concurrency: int


# Connections and requests one process holds at once; beyond, uvicorn answers 503 at once
# rather than let a flood of sockets exhaust memory and file descriptors.
CONCURRENCY_LIMIT = 1000


def _uvicorn_options(settings: ServiceSettings) -> _UvicornOptions:
    # Behind a proxy, X-Forwarded-Proto/-For from the addresses SPOC_FORWARDED_ALLOW_IPS names
    # give the scheme (https: Secure cookies, right links) and the client's address; from
    # anyone else they are ignored. The root path is the prefix the proxy serves us under.
    # The client address is what the front door's limits count by (spoc_platform.web).
    options: _UvicornOptions = {
        "access_log": False,
        "log_config": None,
        "lifespan": "on",
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "root_path": settings.root_path,
        # An idle kept-alive connection is closed after this long (uvicorn's default, said).
        "timeout_keep_alive": 5,
        "limit_concurrency": CONCURRENCY_LIMIT,
    }
    # uvloop and httptools roughly double what one worker serves; fall back if absent. Either
    # way a request's head is bounded in size and fields (and, with httptools, in time).
    try:
        import uvloop  # noqa: F401

        from spoc.guarded_http import GuardedHttpToolsProtocol
    except ImportError:
        # h11 limits the head itself: to 16 KiB, as spoc.guarded_http does (said here).
        options.update({"http": "h11", "h11_max_incomplete_event_size": 16 * 1024})
    else:
        options.update({"loop": "uvloop", "http": GuardedHttpToolsProtocol})
    return options


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Where the SQLite files and mail go.")] = Path(
        ".spoc"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Least severe level logged.")
    ] = LogLevel.INFO,
) -> None:
    """Run all of Spoc in one process: no broker, no Docker (SQLite, in-memory bus, Maildir)."""
    from spoc.datadir_lock import DataDirInUse
    from spoc.embedded import build_desk, create_embedded_app
    from spoc_platform.migrations import alembic_quiet

    configure_logging(log_level)
    public = f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}"
    try:
        # Four databases migrate before the banner: their dozen INFO lines would bury it.
        with alembic_quiet():
            desk = build_desk(data_dir, portal_url=os.environ.get("SPOC_NOTIFY_PORTAL_URL", public))
    except DataDirInUse as error:
        typer.echo(f"spoc up: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(
        f"Spoc embedded default on {public}  (API docs {public}/docs; mail in {desk.maildir}/new)",
        err=True,
    )
    options = _uvicorn_options(desk.settings.intake)  # intake is the embedded app's root
    uvicorn.run(create_embedded_app(desk), host=host, port=port, **options)


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run one service on RabbitMQ and PostgreSQL (SPOC_<SVC>_DATABASE_URL, SPOC_AMQP_URL)."""
    entry = SERVICES[service]
    settings = _settings_or_exit(service)
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(entry.create_app(settings), host=host, port=port, **_uvicorn_options(settings))


@app.command()
def migrate(
    service: Annotated[ServiceName, typer.Argument(help="Whose database to migrate.")],
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring a service's database to the latest schema (Alembic), then exit.

    Shows each revision as it is applied: a bar in a terminal, a line each otherwise."""
    from spoc.progress import progress
    from spoc_platform.migrations import alembic_quiet, upgrade

    settings = _settings_or_exit(service)
    configure_logging(settings.log_level, json=settings.log_json)
    # The progress says which revision runs; Alembic's own INFO lines would repeat it.
    with alembic_quiet(), progress(f"{service.value}: migrating") as steps:
        upgrade(SERVICES[service].migrations, settings.database_url, revision, steps=steps)
    typer.echo(f"{service.value}: database at {revision}", err=True)


def _settings_or_exit(service: ServiceName) -> ServiceSettings:
    from pydantic import ValidationError
    from pydantic_settings.exceptions import SettingsError

    prefix = f"SPOC_{service.value.upper()}_"
    try:
        return SERVICES[service].settings()
    except ValidationError as error:
        # Each problem by name, never the value given: that may be a password or a token.
        problems = "\n".join(
            f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        )
        typer.echo(
            f"{service.value}: invalid settings (environment {prefix}*):\n{problems}", err=True
        )
        raise typer.Exit(2) from error
    except SettingsError as error:
        # A setting's file (<NAME>_FILE, SPOC_SECRETS_DIR) unreadable or given twice.
        reason = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
        typer.echo(f"{service.value}: invalid settings (environment {prefix}*): {reason}", err=True)
        raise typer.Exit(2) from error


def main() -> None:
    app(prog_name="spoc")


if __name__ == "__main__":
    main()
