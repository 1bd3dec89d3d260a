"""Settings read from files, the way orchestrators hand secrets to containers.

`<NAME>_FILE=/run/secrets/x` reads the setting NAME from that file (Docker's convention, as the
PostgreSQL image's POSTGRES_PASSWORD_FILE); SPOC_SECRETS_DIR names a directory whose files are
called like the variables (a Kubernetes Secret or Compose secrets mounted as files). Either way
the secret never sits in the process environment, where `docker inspect`, crash reports and
child processes would see it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

FILE_SUFFIX = "_FILE"
SECRETS_DIR_VARIABLE = "SPOC_SECRETS_DIR"


def read_secret_file(path: Path, variable: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"{variable}: cannot read {path}: {error.strerror}") from error
    # Files written by editors, `echo` or `kubectl create secret --from-file` end in a newline
    # that is no part of the secret; anything else (spaces included) is kept as written.
    return text.rstrip("\r\n")


class FileVariablesSource(EnvSettingsSource):
    """Each setting from the file its <NAME>_FILE variable names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        field_key, value_is_complex = field_name, False
        for field_key, env_name, value_is_complex in self._extract_field_info(field, field_name):
            file_variable = env_name + (FILE_SUFFIX.lower() if not self.case_sensitive else "_FILE")
            path = self.env_vars.get(file_variable)
            if path is None:
                continue
            shown = file_variable.upper()
            if self.env_vars.get(env_name) is not None:
                raise SettingsError(
                    f"both {env_name.upper()} and {shown} are set: give the setting one way"
                )
            return read_secret_file(Path(path), shown), field_key, value_is_complex
        return None, field_key, value_is_complex


def secrets_dir_source(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """Settings from the files in SPOC_SECRETS_DIR, when it is set (and then it must exist)."""
    directory = os.environ.get(SECRETS_DIR_VARIABLE)
    if not directory:
        return ()
    if not Path(directory).is_dir():
        raise SettingsError(f"{SECRETS_DIR_VARIABLE}={directory} is not a directory")
    return (SecretsSettingsSource(settings_cls, secrets_dir=directory),)
