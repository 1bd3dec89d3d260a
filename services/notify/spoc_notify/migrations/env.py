"""Alembic environment for notify's own database."""

from spoc_notify.models import Base
from spoc_platform.migrations import run_env

run_env(Base.metadata)
