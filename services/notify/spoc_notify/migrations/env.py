"""Alembic environment for notify's own database."""

from spoc_platform.migrations import run_env
from spoc_notify.models import Base

run_env(Base.metadata)
