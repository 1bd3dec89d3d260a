"""What every package of the workspace promises about itself: one supported Python range, one
licence (with its text in every wheel), a default Python inside the range, and scripts/setup
choosing a supported Python or saying clearly that there is none."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
REQUIRES_PYTHON = ">=3.11,<3.14"
SUPPORTED = ("3.11", "3.12", "3.13")


def projects() -> dict[Path, dict]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {ROOT: root}
    for member in root["tool"]["uv"]["workspace"]["members"]:
        found[ROOT / member] = tomllib.loads((ROOT / member / "pyproject.toml").read_text())
    return found


@pytest.mark.parametrize("directory", list(projects()), ids=lambda d: d.name or "spoc")
def test_every_package_declares_the_same_python_range_and_licence(directory: Path) -> None:
    project = projects()[directory]["project"]
    assert project["requires-python"] == REQUIRES_PYTHON, project["name"]
    assert project["license"] == "Apache-2.0", project["name"]
    assert project["license-files"] == ["LICENSE"], project["name"]
    licence = directory / "LICENSE"
    assert licence.is_file() and not licence.is_symlink(), f"{licence} (a symlink breaks sdists)"
    assert licence.read_bytes() == (ROOT / "LICENSE").read_bytes(), f"{licence} differs"
    assert "Apache License" in licence.read_text() and "Version 2.0" in licence.read_text()


def test_the_supported_range_is_exactly_the_versions_setup_and_the_lock_know() -> None:
    allowed = SpecifierSet(REQUIRES_PYTHON)
    assert [v for v in ("3.10", *SUPPORTED, "3.14") if Version(v) in allowed] == list(SUPPORTED)
    setup = (ROOT / "scripts" / "setup").read_text()
    bounds = re.search(r"MIN_MINOR=(\d+) MAX_MINOR=(\d+)", setup)
    assert bounds and (f"3.{bounds[1]}", f"3.{bounds[2]}") == (SUPPORTED[0], SUPPORTED[-1])
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert SpecifierSet(lock["requires-python"].replace(" ", "")) == allowed, "run `uv lock`"


def test_the_default_python_is_supported_and_is_what_ci_and_the_image_use() -> None:
    default = (ROOT / ".python-version").read_text().strip()
    assert default in SUPPORTED
    assert f"python:{default}-slim" in (ROOT / "Dockerfile").read_text()
    assert f"python{default}" in (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["mypy"]["python_version"] == default
    assert project["tool"]["ruff"]["target-version"] == "py" + default.replace(".", "")


# ---- scripts/setup's choice of Python, in a scratch copy with a PATH of stand-ins ----------


def stand_in_tree(tmp_path: Path, *, default: str | None) -> tuple[Path, Path]:
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", tmp_path / "repo" / "scripts" / "setup")
    if default:
        (tmp_path / "repo" / ".python-version").write_text(default + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # No version manager, and every Python name a broken shim unless a test says otherwise.
    for name in ("pyenv", "python3", *(f"python{v}" for v in SUPPORTED)):
        broken_shim(bin_dir / name)
    return tmp_path / "repo", bin_dir


def broken_shim(path: Path) -> None:
    path.unlink(missing_ok=True)  # never write through a symlink to a real interpreter
    path.write_text(f'#!/bin/sh\necho "{path.name}: command not found" >&2\nexit 127\n')
    path.chmod(0o755)


def working_python(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(sys.executable)


def old_python(path: Path) -> None:
    """A Python that runs and says it is 3.10."""
    path.unlink(missing_ok=True)
    fake = "import sys; sys.version_info = (3, 10, 0, 'final', 0); exec(sys.argv[1])"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{fake}" "$2"\n')
    path.chmod(0o755)


def which_python(repo: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / "scripts" / "setup"), "--which-python"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), **env},
        check=False,
    )


def test_setup_prefers_the_default_python_then_any_supported_one(tmp_path: Path) -> None:
    repo, bin_dir = stand_in_tree(tmp_path, default="3.12")
    working_python(bin_dir / "python3.11")
    working_python(bin_dir / "python3.12")
    chosen = which_python(repo, bin_dir)
    assert (chosen.returncode, chosen.stdout.strip()) == (0, str(bin_dir / "python3.12"))

    broken_shim(bin_dir / "python3.12")  # named on PATH, but not runnable: skipped
    chosen = which_python(repo, bin_dir)
    assert (chosen.returncode, chosen.stdout.strip()) == (0, str(bin_dir / "python3.11"))

    chosen = which_python(repo, bin_dir, SPOC_PYTHON=str(bin_dir / "python3.11"))
    assert chosen.stdout.strip() == str(bin_dir / "python3.11")


def test_setup_without_a_supported_python_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    repo, bin_dir = stand_in_tree(tmp_path, default=None)
    # Debian's /usr/bin/python3.1x must not be found either: every candidate is shadowed, and
    # python3 runs but is too old.
    old_python(bin_dir / "python3")
    refused = which_python(repo, bin_dir)
    assert refused.returncode != 0 and refused.stdout == ""
    assert "no Python 3.11 to 3.13 found" in refused.stderr and "SPOC_PYTHON" in refused.stderr

    refused = which_python(repo, bin_dir, SPOC_PYTHON=str(tmp_path / "nowhere" / "python"))
    assert refused.returncode != 0
    assert "is not a Python 3.11 to 3.13" in refused.stderr
