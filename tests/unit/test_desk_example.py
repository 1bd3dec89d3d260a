"""The example desk file in docs/ is valid for every service that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

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
