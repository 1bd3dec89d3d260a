"""Alembic environment for sla's own database."""

from spoc_platform.migrations import run_env
from spoc_sla.models import Base

run_env(Base.metadata)
