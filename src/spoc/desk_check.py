"""`spoc desk check FILE`: the whole desk file as the services will read it, and what no single
service can see — the sections agreeing with each other. Each service validates only its own
section at start; a routing tree that names a category intake refuses, or an owner with no
staff account, is found here, before the deploy rather than on a requester's ticket."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from spoc_intake.desk import IntakeDesk
from spoc_platform.desk_config import DeskConfigError, load_section
from spoc_routing.desk import RoutingDesk
from spoc_sla.desk import SlaDesk

app = typer.Typer(help="The desk file (SPOC_DESK_CONFIG): check it before a deploy.")


@dataclass
class Findings:
    # The desk will not run (a section refused at start) or will misroute tickets.
    errors: list[str] = field(default_factory=list)
    # Allowed, but probably not meant.
    warnings: list[str] = field(default_factory=list)


def check_desk(path: Path) -> Findings:
    findings = Findings()
    sections: dict[str, object] = {}
    for name, model in (("intake", IntakeDesk), ("routing", RoutingDesk), ("sla", SlaDesk)):
        try:
            sections[name] = load_section(path, name, model)
        except DeskConfigError as error:
            findings.errors.append(str(error))
    intake, routing, sla = (sections.get(name) for name in ("intake", "routing", "sla"))
    if isinstance(intake, IntakeDesk) and isinstance(routing, RoutingDesk):
        _categories_agree(intake, routing, findings)
        _people_agree(intake, routing, findings)
    if isinstance(routing, RoutingDesk) and isinstance(sla, SlaDesk):
        priorities = sorted({p for row in routing.matrix.values() for p in row.values()})
        findings.warnings += [
            f"sla.policies: no policy for {priority}, which routing's matrix gives: its tickets "
            f"get the fallback {sla.fallback_priority}'s targets"
            for priority in priorities
            if priority not in sla.policies
        ]
    return findings


def _categories_agree(intake: IntakeDesk, routing: RoutingDesk, findings: Findings) -> None:
    if not intake.categories:
        return  # intake takes any category: routing's tree is the only list
    known = {(c.id,) for c in intake.categories} | {
        (c.id, s.id) for c in intake.categories for s in c.subcategories
    }
    for path, _ in routing.category_nodes():
        # Items are routing's own (intake asks up to the subcategory).
        if len(path) <= 2 and path not in known:
            findings.errors.append(
                f"routing.categories.{'.'.join(path)}: intake declares no such "
                f"{'category' if len(path) == 1 else 'subcategory'}: a ticket classified there "
                "keeps no category, and an agent cannot choose it"
            )
    in_tree = {path for path, _ in routing.category_nodes()}
    findings.warnings += [
        f"intake.categories.{'.'.join(path)}: not in routing's tree: its tickets go to "
        f"{routing.default_group} with the default impact and urgency"
        for path in sorted(known - in_tree)
        if len(path) == 1
    ]


def _people_agree(intake: IntakeDesk, routing: RoutingDesk, findings: Findings) -> None:
    staff = {entry.id: entry for entry in intake.staff}
    if not staff:
        return  # accounts made through the admin API: nothing to compare with here
    groups = {group.id for group in routing.groups}
    for group in routing.groups:
        findings.warnings += [
            f"routing.groups.{group.id}.agents.{agent.id}: no staff account in intake.staff "
            "(made through the admin API, or they cannot sign in to work their tickets)"
            for agent in group.agents
            if agent.id not in staff
        ]
        if group.manager is not None and group.manager not in staff:
            findings.warnings += [
                f"routing.groups.{group.id}.manager: '{group.manager}' has no staff account in "
                "intake.staff"
            ]
    for entry in intake.staff:
        findings.warnings += [
            f"intake.staff.{entry.id}.groups: routing has no group '{name}'"
            for name in entry.groups
            if name not in groups
        ]


@app.command("check")
def check_command(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The desk file (YAML).")
    ],
) -> None:
    """Validate every section and check they agree; exit 1 on an error (warnings exit 0)."""
    findings = check_desk(path)
    for error in findings.errors:
        typer.echo(f"error: {error}", err=True)
    for warning in findings.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if findings.errors:
        raise typer.Exit(1)
    typer.echo(f"{path}: the desk file is valid ({len(findings.warnings)} warning(s))")
