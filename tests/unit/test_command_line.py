"""The `spoc` command as its users meet it: version, log levels, log lines, progress."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from spoc import __version__
from spoc.cli import app
from spoc.progress import progress
from spoc_platform.logs import configure_logging

pytestmark = pytest.mark.unit
SPOC = Path(sys.executable).parent / "spoc"


def test_spoc_version_and_python_dash_m_spoc_print_the_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert __version__ == version("spoc")
    for command in ([str(SPOC)], [sys.executable, "-m", "spoc"]):
        run = subprocess.run(
            [*command, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert (run.returncode, run.stdout.strip()) == (0, f"spoc {__version__}"), run.stderr


def test_log_level_accepts_real_levels_in_any_case_and_refuses_others() -> None:
    refused = CliRunner().invoke(app, ["up", "--log-level", "loud"])
    assert refused.exit_code == 2
    assert "Invalid value for '--log-level'" in refused.output
    help_text = CliRunner().invoke(app, ["up", "--help"]).output
    assert "debug" in help_text and "critical" in help_text


def test_a_service_setting_refuses_an_unknown_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from spoc_routing.settings import RoutingSettings

    url = "sqlite+aiosqlite:///x.sqlite3"
    monkeypatch.setenv("SPOC_ROUTING_LOG_LEVEL", "warning")
    assert RoutingSettings(database_url=url).log_level == "WARNING"
    monkeypatch.setenv("SPOC_ROUTING_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="unknown log level 'chatty'"):
        RoutingSettings(database_url=url)


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    yield capsys
    logging.getLogger().handlers.clear()


def test_json_logs_carry_utc_iso_8601_times_and_no_colour_codes(
    captured_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", json=True)
    # What uvicorn logs at start: a plain message, and a coloured twin of it.
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s",
        "http://127.0.0.1:8000",
        extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"},
    )
    logging.getLogger("spoc.test").warning("a \x1b[31mred\x1b[0m word")

    written = captured_logs.readouterr().err
    lines = [json.loads(line) for line in written.splitlines()]
    assert [line["message"] for line in lines] == [
        "Uvicorn running on http://127.0.0.1:8000",
        "a red word",
    ]
    assert "\x1b" not in written and "color_message" not in lines[0]
    for line in lines:
        # 2026-12-01T19:14:29.521Z: UTC whatever the machine's zone
        assert line["time"].endswith("Z") and line["time"][10] == "T", line["time"]


def test_console_logs_carry_utc_iso_8601_times(
    captured_logs: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tehran")
    time.tzset()
    try:
        configure_logging("INFO", json=False)
        record = logging.LogRecord("spoc.test", logging.INFO, __file__, 1, "hello", None, None)
        record.created = 1_795_000_000.25  # 2026-11-18T11:06:40.250Z
        logging.getLogger("spoc.test").handle(record)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert captured_logs.readouterr().err.startswith(
        "2026-11-18T11:06:40.250Z INFO    spoc.test: hello"
    )


# Progress of long commands


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_outside_a_terminal() -> None:
    out = io.StringIO()
    with progress("intake: migrating", stream=out) as steps:
        steps.total(2)
        steps.advance(note="0001 initial schema")
        steps.advance(note="0002 more")
    lines = out.getvalue().splitlines()
    assert lines[:2] == [
        "intake: migrating: 1/2 0001 initial schema",
        "intake: migrating: 2/2 0002 more",
    ]
    assert lines[2].startswith("intake: migrating: done, 2 in ")
    assert "\x1b" not in out.getvalue()


def test_progress_is_a_bar_in_a_terminal() -> None:
    out = _Terminal()
    with progress("replaying", total=3, stream=out) as steps:
        steps.advance(3, note="m-3")
    shown = out.getvalue()
    assert "\x1b[" in shown  # drawn for a terminal
    assert "replaying" in shown and "3/3" in shown and "━" in shown


def test_spoc_migrate_reports_each_revision_instead_of_alembics_lines(
    tmp_path: Path,
) -> None:
    env = {
        "SPOC_SLA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'sla.sqlite3'}",
        "SPOC_SLA_LOG_JSON": "true",
        "PATH": "/usr/bin:/bin",
    }
    run = subprocess.run(
        [str(SPOC), "migrate", "sla"], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    # One line per revision, counted against however many sla has, then a summary.
    revisions = len(
        list(
            (Path(__file__).parents[2] / "services/sla/spoc_sla/migrations/versions").glob("0*.py")
        )
    )
    assert lines[0] == f"sla: migrating: 1/{revisions} 0001 initial schema"
    for step in range(2, revisions + 1):
        assert lines[step - 1].startswith(f"sla: migrating: {step}/{revisions} {step:04d} ")
    assert lines[revisions].startswith(f"sla: migrating: done, {revisions} in ")
    assert lines[revisions + 1] == "sla: database at head"
    assert "alembic" not in run.stderr


def test_dead_letter_replay_shows_its_progress_apart_from_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spoc.operator import AdminApi

    async def replayed_three(self: AdminApi, method: str, *args: Any, **kwargs: Any) -> Any:
        return {"service": "sla", "replayed": 3}

    monkeypatch.setattr(AdminApi, "call", replayed_three)
    done = CliRunner().invoke(
        app, ["dead-letters", "replay", "sla", "--all", "--url", "http://desk", "--token", "t"]
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "sla: replayed 3"
    assert "sla: replaying dead letters: 3/3" in done.stderr.splitlines()
