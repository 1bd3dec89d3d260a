"""The example desk file in docs/ is valid for every service that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spoc.cli import app
from spoc.desk_check import check_desk
from spoc_intake.desk import IntakeDesk
from spoc_platform.desk_config import load_section
from spoc_routing.desk import RoutingDesk
from spoc_sla.desk import SlaDesk

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).parents[2] / "docs" / "desk.example.yaml"


def test_the_example_desk_file_loads_for_routing_and_sla() -> None:
    routing = load_section(EXAMPLE, "routing", RoutingDesk)
    sla = load_section(EXAMPLE, "sla", SlaDesk)
    assert routing.priority("high", "high") == "P1"
    assert sla.calendars["tehran-office"].work_days[0] == "sat"
    assert sla.targets_for("P2")[1].calendar == "office"


def test_the_examples_routing_tree_uses_the_categories_intake_declares() -> None:
    """Routing's categories and intake's are one tree in two sections: each of routing's
    categories and subcategories is one intake accepts."""
    routing = load_section(EXAMPLE, "routing", RoutingDesk)
    intake = load_section(EXAMPLE, "intake", IntakeDesk)
    declared = {(c.id,) for c in intake.categories} | {
        (c.id, s.id) for c in intake.categories for s in c.subcategories
    }
    used = {path[:2] for path, _ in routing.category_nodes()}
    assert used <= declared
    assert routing.rules and routing.categories


def test_spoc_desk_check_passes_the_example_without_a_warning() -> None:
    done = CliRunner().invoke(app, ["desk", "check", str(EXAMPLE)])
    assert done.exit_code == 0, done.output
    assert "the desk file is valid (0 warning(s))" in done.output


def test_spoc_desk_check_finds_what_no_single_service_sees(tmp_path: Path) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(
        """
intake:
  staff:
    - {id: sara, name: Sara Ahmadi, email: sara@example.org, groups: [service-desk, printers]}
  categories:
    - {id: hardware, name: Hardware, subcategories: [{id: printer, name: Printer}]}
    - {id: access, name: Access}
routing:
  groups:
    - id: service-desk
      name: Service Desk
      manager: boss
      agents: [{id: sara, name: Sara Ahmadi}, {id: ghost, name: Nobody}]
  categories:
    - id: hardware
      subcategories: [{id: scanner}]
sla:
  policies:
    P3: {calendar: round-the-clock, first_response_minutes: 60, resolution_minutes: 480}
  fallback_priority: P3
"""
    )
    findings = check_desk(desk)
    assert findings.errors == [
        "routing.categories.hardware.scanner: intake declares no such subcategory: a ticket "
        "classified there keeps no category, and an agent cannot choose it"
    ]
    assert findings.warnings == [
        "intake.categories.access: not in routing's tree: its tickets go to service-desk with "
        "the default impact and urgency",
        "routing.groups.service-desk.agents.ghost: no staff account in intake.staff (made "
        "through the admin API, or they cannot sign in to work their tickets)",
        "routing.groups.service-desk.manager: 'boss' has no staff account in intake.staff",
        "intake.staff.sara.groups: routing has no group 'printers'",
        *(
            f"sla.policies: no policy for {p}, which routing's matrix gives: its tickets get "
            "the fallback P3's targets"
            for p in ("P1", "P2", "P4", "P5")
        ),
    ]
    done = CliRunner().invoke(app, ["desk", "check", str(desk)])
    assert done.exit_code == 1
    assert "error: routing.categories.hardware.scanner" in done.output


def test_spoc_desk_check_reports_a_section_a_service_would_refuse(tmp_path: Path) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text("routing:\n  groups: [{id: a, name: A, strategy: random}]\n")
    done = CliRunner().invoke(app, ["desk", "check", str(desk)])
    assert done.exit_code == 1
    assert "section 'routing' is invalid" in done.output and "strategy" in done.output
