"""Alembic environment for intake's own database."""

from spoc_platform.migrations import run_env
from spoc_intake.models import Base

run_env(Base.metadata)
