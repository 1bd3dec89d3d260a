"""The workflow table: what may follow what, for staff and for requesters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from spoc_intake import workflow

pytestmark = pytest.mark.unit
RESOLVED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_every_status_has_a_row_and_every_target_is_a_status() -> None:
    assert set(workflow.STAFF_TRANSITIONS) == set(workflow.STATUSES)
    for targets in workflow.STAFF_TRANSITIONS.values():
        assert set(targets) <= set(workflow.STATUSES)


def test_the_architecture_path_and_the_reopen_are_allowed_to_staff() -> None:
    path = ["new", "open", "in_progress", "pending", "resolved", "closed"]
    for current, following in itertools.pairwise(path):
        assert following in workflow.allowed_targets(current, by_requester=False), current
    assert "open" in workflow.allowed_targets("resolved", by_requester=False)


def test_closed_is_final_and_nothing_moves_back_to_new() -> None:
    assert workflow.allowed_targets("closed", by_requester=False) == ()
    assert all("new" not in targets for targets in workflow.STAFF_TRANSITIONS.values())


def test_a_requester_only_confirms_or_reopens_a_resolution() -> None:
    assert set(workflow.allowed_targets("resolved", by_requester=True)) == {"open", "closed"}
    for status in ("new", "open", "in_progress", "pending", "closed"):
        assert workflow.allowed_targets(status, by_requester=True) == ()


def test_the_reopen_window_ends_after_the_configured_days() -> None:
    inside = RESOLVED_AT + timedelta(days=7)
    outside = RESOLVED_AT + timedelta(days=7, seconds=1)
    assert workflow.within_reopen_window(RESOLVED_AT, inside, 7)
    assert not workflow.within_reopen_window(RESOLVED_AT, outside, 7)


def test_the_staff_table_is_exactly_the_agreed_one() -> None:
    # Written out again on purpose: a move added or dropped by accident fails here.
    assert workflow.STAFF_TRANSITIONS == {
        "new": ("open", "in_progress", "resolved"),
        "open": ("in_progress", "pending", "resolved"),
        "in_progress": ("open", "pending", "resolved"),
        "pending": ("in_progress", "resolved"),
        "resolved": ("open", "closed"),
        "closed": (),
    }
