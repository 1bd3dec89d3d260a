"""`spoc token create --expires`: the forms an operator writes, and what each means; and how
`spoc token` and `spoc staff` tell an operator their database is not there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spoc.token_cli import parse_expiry

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("90d", NOW + timedelta(days=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("2027-03-01", datetime(2027, 3, 1, tzinfo=UTC)),
        ("2027-03-01T09:00+01:00", datetime(2027, 3, 1, 8, 0, tzinfo=UTC)),
        ("never", None),
        (" NEVER ", None),
    ],
)
def test_an_expiry_is_a_duration_a_date_a_moment_or_never(
    written: str, meant: datetime | None
) -> None:
    assert parse_expiry(written, now=NOW) == meant


@pytest.mark.parametrize("written", ["soon", "0d", "90", "2027-03-01T09:00", "-3d", ""])
def test_anything_else_is_refused_with_the_forms_that_work(written: str) -> None:
    with pytest.raises(ValueError):
        parse_expiry(written, now=NOW)


@pytest.mark.parametrize("command", [["staff", "list"], ["token", "list"]])
def test_a_data_folder_without_a_desk_is_named_and_left_untouched(
    command: list[str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    run = CliRunner().invoke(app, [*command, "--data-dir", str(tmp_path)])

    assert run.exit_code == 2
    assert f"no embedded desk in {tmp_path}" in run.output
    assert list(tmp_path.iterdir()) == []  # no empty intake.sqlite3 left behind


@pytest.mark.parametrize("command", [["staff", "list"], ["token", "list"]])
def test_an_unreachable_database_is_one_line_and_status_1(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    monkeypatch.setenv("SPOC_INTAKE_DATABASE_URL", "postgresql+asyncpg://spoc@127.0.0.1:1/none")

    run = CliRunner().invoke(app, command)

    assert run.exit_code == 1
    assert "intake's database is unreachable" in run.output
    assert "Traceback" not in run.output
