"""Alembic environment for intake's own database."""

from spoc_intake.models import Base
from spoc_platform.migrations import run_env

run_env(Base.metadata)
