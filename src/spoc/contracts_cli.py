"""`spoc contracts write` / `check`: the event catalogue, and released contracts that only grow.

Every released event version, and the envelope, is frozen in a snapshot of its JSON Schema:
docs/events/released/<type>/v<N>.json and released/envelope.json. The code must stay an
additive extension of each. Comparing with catalogue.json alone guarded nothing: the change
that broke it rewrote it (`--allow-breaking`) and then agreed with itself. A snapshot grows
with an additive change; it is never rewritten for a breaking one, nor deleted, so a break
fails `check` until it is published as a new version beside the old one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from spoc_contracts.asyncapi import render_asyncapi
from spoc_contracts.catalogue import (
    CatalogueDoc,
    build_catalogue,
    render_catalogue,
    schema_breaking_changes,
)

contracts = typer.Typer(help="The event catalogue (JSON Schema of every event).")

# Where the catalogue lives in the source tree this command was installed from; the code it
# describes is that tree's too, so neither depends on the directory the command runs in.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = Path("docs/events")
CATALOGUE_NAME = "catalogue.json"
# The same catalogue as an AsyncAPI 3 document, beside it (spoc_contracts.asyncapi).
ASYNCAPI_NAME = "asyncapi.json"
RELEASED_NAME = "released"
ENVELOPE = "envelope"

Schema = dict[str, Any]


def code_contracts(catalogue: CatalogueDoc) -> dict[str, Schema]:
    """The code's contracts by snapshot name: `envelope`, and `<type>/v<N>` for each event."""
    found: dict[str, Schema] = {ENVELOPE: catalogue["envelope"]}
    for event in catalogue["events"].values():
        found[f"{event['type']}/v{event['version']}"] = event["schema"]
    # As a snapshot reads back, so that equal means equal.
    return {name: json.loads(json.dumps(schema)) for name, schema in found.items()}


def released_contracts(root: Path) -> dict[str, Schema]:
    """Every released snapshot under `root` by name (its path without `.json`)."""
    return {
        path.relative_to(root).with_suffix("").as_posix(): json.loads(
            path.read_text(encoding="utf-8")
        )
        for path in sorted(root.rglob("*.json"))
    }


@dataclass
class Review:
    """The code against what was released."""

    unreleased: list[str] = field(default_factory=list)  # no snapshot yet
    grown: list[str] = field(default_factory=list)  # an additive change the snapshot lacks
    broken: dict[str, list[str]] = field(default_factory=dict)  # removed, or not additive

    def problems(self) -> list[str]:
        return [problem for found in self.broken.values() for problem in found]


def review(released: dict[str, Schema], code: dict[str, Schema]) -> Review:
    result = Review()
    for name, snapshot in released.items():
        if name not in code:
            result.broken[name] = [
                f"{name}: released, but gone from the code (keep it beside its new version)"
            ]
            continue
        problems = schema_breaking_changes(name, snapshot, code[name])
        if problems:
            result.broken[name] = problems
        elif snapshot != code[name]:
            result.grown.append(name)
    result.unreleased = [name for name in code if name not in released]
    return result


def _write_json(path: Path, document: Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


CataloguePath = Annotated[
    Path | None,
    typer.Option(
        help="Where the catalogue lives [default: docs/events/catalogue.json of the Spoc "
        "source tree this command runs from]; its AsyncAPI 3 twin is asyncapi.json beside it.",
        show_default=False,
    ),
]
ReleasedPath = Annotated[
    Path | None,
    typer.Option(
        help="Where the released snapshots live (<type>/v<N>.json) [default: "
        "docs/events/released of the Spoc source tree].",
        show_default=False,
    ),
]


def _events_dir() -> Path:
    """docs/events of the source tree; a clear exit where Spoc runs from an installed wheel,
    which carries the code but not the released history."""
    found = SOURCE_ROOT / EVENTS_DIR
    if not (found / RELEASED_NAME).is_dir():
        typer.echo(
            f"error: no released event snapshots at {found / RELEASED_NAME}: Spoc is not run "
            "from its source tree. Give --released DIR (and --path FILE) of a Spoc checkout.",
            err=True,
        )
        raise typer.Exit(2)
    return found


def _locate(path: Path | None, released: Path | None) -> tuple[Path, Path]:
    if path is None or released is None:
        events = _events_dir()
        path = path or events / CATALOGUE_NAME
        released = released or events / RELEASED_NAME
    return path, released


@contracts.command("write")
def write(
    path: CataloguePath = None,
    released: ReleasedPath = None,
    allow_breaking: Annotated[
        bool,
        typer.Option(
            help="Write the catalogue despite a non-additive change. Never rewrites or deletes "
            "a released version's snapshot, so `check` fails until the change is a new version."
        ),
    ] = False,
) -> None:
    """Regenerate the catalogue and snapshot new event versions; refuses a non-additive change."""
    path, released = _locate(path, released)
    code = code_contracts(build_catalogue())
    found = review(released_contracts(released), code)
    if found.broken and not allow_breaking:
        typer.echo(
            "not additive — publish a new event version instead:\n  "
            + "\n  ".join(found.problems()),
            err=True,
        )
        raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_catalogue(), encoding="utf-8")
    typer.echo(f"wrote {path}", err=True)
    asyncapi = path.with_name(ASYNCAPI_NAME)
    asyncapi.write_text(render_asyncapi(), encoding="utf-8")
    typer.echo(f"wrote {asyncapi}", err=True)
    for name in found.unreleased + found.grown:
        _write_json(released / f"{name}.json", code[name])
        typer.echo(f"{'released' if name in found.unreleased else 'grew'} {name}", err=True)
    if found.broken:
        typer.echo(
            "released versions kept as released: `spoc contracts check` fails until the change "
            "is a new event version:\n  " + "\n  ".join(found.problems()),
            err=True,
        )


@contracts.command("check")
def check(path: CataloguePath = None, released: ReleasedPath = None) -> None:
    """Fail if the code breaks or drops a released event version, or a file is out of date."""
    path, released = _locate(path, released)
    if not released.is_dir():
        typer.echo(
            f"error: no released event snapshots at {released} (a directory of "
            "<type>/v<N>.json): give --released DIR of a Spoc checkout",
            err=True,
        )
        raise typer.Exit(2)
    code = code_contracts(build_catalogue())
    found = review(released_contracts(released), code)
    problems = ["breaking changes:\n  " + "\n  ".join(found.problems())] if found.broken else []
    problems += [
        f"{name}: not released yet: run `spoc contracts write`" for name in found.unreleased
    ]
    problems += [
        f"{name}: the released snapshot lacks an additive change: run `spoc contracts write`"
        for name in found.grown
    ]
    for written, current in (
        (path, render_catalogue),
        (path.with_name(ASYNCAPI_NAME), render_asyncapi),
    ):
        if not written.exists() or written.read_text(encoding="utf-8") != current():
            problems.append(f"{written} is out of date: run `spoc contracts write`")
    if problems:
        typer.echo("\n".join(problems), err=True)
        raise typer.Exit(1)
    typer.echo("catalogue up to date; every released version is there and only grew", err=True)
