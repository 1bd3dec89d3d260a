"""Staff sign-in: passwords (argon2id), lockout with back-off, and session cookies."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake.callers import Caller

SESSION_COOKIE = "spoc_session"


async def caller_from_staff_session(request: Request, engine: AsyncEngine) -> Caller | None:
    """The staff member whose session cookie this request carries, if it is valid."""
    return None
