"""Alembic environment for routing's own database."""

from spoc_platform.migrations import run_env
from spoc_routing.models import Base

run_env(Base.metadata)
