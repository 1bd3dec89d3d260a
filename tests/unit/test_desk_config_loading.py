"""Reading the desk file: what an absent or empty section means, and what a broken file says."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoc_platform.desk_config import DeskConfigError, load_section
from spoc_routing.desk import RoutingDesk

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "yaml_text",
    ["", "# nothing configured yet\n", "sla:\n  fallback_priority: P4\n", "routing:\n"],
    ids=["empty", "comment-only", "other-section-only", "empty-section"],
)
def test_a_desk_file_without_a_routing_section_gives_routing_its_defaults(
    tmp_path: Path, yaml_text: str
) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(yaml_text)
    assert load_section(desk_file, "routing", RoutingDesk) == RoutingDesk()


def test_a_desk_file_read_as_utf_8_keeps_names_in_any_language(tmp_path: Path) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_bytes(
        (
            "routing:\n"
            "  default_group: wsparcie\n"
            "  groups:\n"
            "    - {id: wsparcie, name: Wsparcie IT — Łódź}\n"
        ).encode()
    )
    assert load_section(desk_file, "routing", RoutingDesk).group("wsparcie").name == (
        "Wsparcie IT — Łódź"
    )


def test_a_desk_file_that_is_not_a_mapping_of_sections_is_refused_by_name(tmp_path: Path) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text("- routing\n- sla\n")
    with pytest.raises(DeskConfigError) as refused:
        load_section(desk_file, "routing", RoutingDesk)
    assert str(refused.value) == f"{desk_file}: the top level must be a mapping of sections"


def test_a_desk_file_that_cannot_be_read_is_refused_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "desk.yaml"
    with pytest.raises(DeskConfigError) as refused:
        load_section(missing, "routing", RoutingDesk)
    assert str(refused.value).startswith(f"cannot read desk configuration {missing}: ")
    assert "No such file or directory" in str(refused.value)


def test_an_invalid_section_is_refused_with_its_name_and_the_validation_errors(
    tmp_path: Path,
) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text("routing:\n  default_group: nowhere\n")
    with pytest.raises(DeskConfigError) as refused:
        load_section(desk_file, "routing", RoutingDesk)
    message = str(refused.value)
    assert message.startswith(f"{desk_file}: section 'routing' is invalid:\n")
    assert "default_group 'nowhere' is not among the groups" in message
