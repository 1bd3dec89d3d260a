"""Desk policy as code: one YAML file, each service reading only its own section."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Section = TypeVar("Section", bound=BaseModel)


class DeskConfigError(ValueError):
    pass


def load_section(path: Path | None, section: str, model: type[Section]) -> Section:
    """The named section of the desk file, validated; the model's defaults when no file is set."""
    if path is None:
        return model()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise DeskConfigError(f"cannot read desk configuration {path}: {error}") from error
    if not isinstance(document, dict):
        raise DeskConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        return model.model_validate(document.get(section) or {})
    except ValidationError as error:
        raise DeskConfigError(f"{path}: section '{section}' is invalid:\n{error}") from error
