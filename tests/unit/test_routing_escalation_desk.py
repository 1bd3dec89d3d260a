"""The desk file's escalation policy and group managers (issue 8): defaults, per-priority
steps, one step more urgent, and errors that name where in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoc_platform.desk_config import DeskConfigError, load_section
from spoc_routing.desk import RoutingDesk

pytestmark = pytest.mark.unit


def refusal(tmp_path: Path, routing: str) -> str:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(f"routing:\n{routing}")
    with pytest.raises(DeskConfigError) as refused:
        load_section(desk_file, "routing", RoutingDesk)
    return str(refused.value)


def test_by_default_a_warning_notifies_the_manager_and_a_breach_also_raises_the_priority() -> None:
    escalation = RoutingDesk().escalation
    assert escalation.steps("P3", "warning") == ("notify_manager",)
    assert escalation.steps("P3", "breach") == ("notify_manager", "raise_priority")


def test_a_priority_s_own_steps_replace_the_desk_s_and_run_owner_first() -> None:
    desk = RoutingDesk.model_validate(
        {
            "escalation": {
                "on_warning": [],
                "priorities": {"P1": {"on_breach": ["raise_priority", "reassign"]}},
            }
        }
    )
    assert desk.escalation.steps("P1", "breach") == ("reassign", "raise_priority")
    # What the override leaves out is the desk's.
    assert desk.escalation.steps("P1", "warning") == ()
    assert desk.escalation.steps("P2", "breach") == ("notify_manager", "raise_priority")


def test_a_raised_priority_is_one_step_more_urgent_and_never_beyond_the_most_urgent() -> None:
    desk = RoutingDesk()
    assert [desk.more_urgent(p) for p in ("P5", "P2", "P1", "P9")] == ["P4", "P1", None, None]
    ordered = RoutingDesk.model_validate(
        {
            "matrix": {
                level: {u: level for u in ("high", "medium", "low")}
                for level in ("high", "medium", "low")
            },
            "priority_order": ["high", "medium", "low"],
        }
    )
    assert (ordered.more_urgent("low"), ordered.more_urgent("high")) == ("medium", None)


def test_a_group_names_its_manager_by_staff_id(tmp_path: Path) -> None:
    desk = RoutingDesk.model_validate(
        {"groups": [{"id": "service-desk", "name": "Service Desk", "manager": "mira"}]}
    )
    assert desk.group("service-desk").manager == "mira"
    message = refusal(
        tmp_path, "  groups: [{id: service-desk, name: Service Desk, manager: Mira Nowak}]\n"
    )
    assert "groups.0.manager\n  String should match pattern" in message


def test_an_unknown_step_is_refused_at_its_place_in_the_file(tmp_path: Path) -> None:
    message = refusal(tmp_path, "  escalation: {on_breach: [notify_manager, call_the_ceo]}\n")
    assert "escalation.on_breach.1\n  Input should be 'notify_manager', 'reassign' or " in message


def test_an_override_for_a_priority_the_matrix_never_gives_or_a_repeated_step_is_refused(
    tmp_path: Path,
) -> None:
    message = refusal(
        tmp_path,
        "  escalation:\n"
        "    priorities: {P9: {on_breach: [reassign]}, P1: {on_warning: [reassign, reassign]}}\n",
    )
    assert (
        "escalation.priorities: 'P9' is not one of ['P1', 'P2', 'P3', 'P4', 'P5']; "
        "escalation.priorities.P1.on_warning: 'reassign' is listed twice"
    ) in message
    misspelt = refusal(tmp_path, "  escalation: {priorities: {P1: {on_brech: [reassign]}}}\n")
    assert "escalation.priorities.P1.on_brech\n  Extra inputs are not permitted" in misspelt
