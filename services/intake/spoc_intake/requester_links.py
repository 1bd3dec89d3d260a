"""Requesters' one-time sign-in links and the sessions they open (all their own tickets)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake.callers import Caller

REQUESTER_SESSION_COOKIE = "spoc_requester"


async def caller_from_requester_session(request: Request, engine: AsyncEngine) -> Caller | None:
    """The requester whose sign-in session cookie this request carries, if it is valid."""
    return None
