"""The example desk file in docs/ is valid for every service that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

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
