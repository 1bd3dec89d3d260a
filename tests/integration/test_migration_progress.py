"""An upgrade tells whoever waits how many revisions lie ahead, then each one as it is applied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from spoc.services import SERVICES, ServiceName
from spoc_platform.migrations import alembic_config, upgrade

pytestmark = pytest.mark.integration


class Steps:
    """A MigrationSteps that writes down what it is told."""

    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.applied: list[tuple[int, str]] = []

    def total(self, count: int | None) -> None:
        self.totals.append(count)

    def advance(self, count: int = 1, note: str = "") -> None:
        self.applied.append((count, note))


def test_an_upgrade_counts_the_revisions_ahead_and_names_each_as_it_is_applied(
    tmp_path: Path,
) -> None:
    # A plain (not async) test: upgrade() runs Alembic on this thread, as `spoc migrate` does.
    migrations = SERVICES[ServiceName.routing].migrations
    url = f"sqlite+aiosqlite:///{tmp_path / 'routing.sqlite3'}"
    script = ScriptDirectory.from_config(alembic_config(migrations, url))
    history = list(reversed(list(script.walk_revisions())))  # oldest first
    assert len(history) >= 2, "the test wants a first revision and one after it at least"
    notes = [f"{revision.revision} {revision.doc}".strip() for revision in history]

    first = Steps()
    upgrade(migrations, url, history[0].revision, steps=first)
    assert (first.totals, first.applied) == ([1], [(1, notes[0])])

    rest = Steps()
    upgrade(migrations, url, steps=rest)  # to head, from where the database now stands
    assert rest.totals == [len(history) - 1]
    assert rest.applied == [(1, note) for note in notes[1:]]

    again = Steps()
    upgrade(migrations, url, steps=again)  # at head: nothing ahead, nothing applied
    assert (again.totals, again.applied) == ([0], [])


UNDOCUMENTED = """
revision = "9999"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""


def test_a_revision_without_a_docstring_is_named_by_its_id_alone(tmp_path: Path) -> None:
    history = tmp_path / "migrations"
    shutil.copytree(
        SERVICES[ServiceName.routing].migrations,
        history,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'routing.sqlite3'}"
    head = ScriptDirectory.from_config(alembic_config(history, url)).get_current_head()
    (history / "versions" / "9999_undocumented.py").write_text(UNDOCUMENTED.format(head=head))
    upgrade(history, url, head)

    steps = Steps()
    upgrade(history, url, steps=steps)
    assert (steps.totals, steps.applied) == ([1], [(1, "9999")])
