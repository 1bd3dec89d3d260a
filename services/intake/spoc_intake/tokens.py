"""Bearer tokens for scripts and integrations: created and shown once, stored hashed."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake.callers import Caller


async def caller_from_bearer_token(request: Request, engine: AsyncEngine) -> Caller | None:
    """The holder of the `Authorization: Bearer …` token, if it is live."""
    return None
