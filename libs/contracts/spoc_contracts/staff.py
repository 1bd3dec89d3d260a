"""Events published by intake about the desk's staff accounts (people, not tickets)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from spoc_contracts.envelope import Event


class StaffUpdated(Event):
    """A staff account as it now is, after it was created or changed (admin API, `spoc staff`,
    or the desk file at intake's start): routing keeps the agent's work profile under the same
    id. Published without a ticket_id; `updated_at` orders two updates of one account, so a
    consumer that receives them out of order keeps the newer."""

    TYPE = "staff.updated"
    VERSION = 1

    id: str
    name: str
    email: str
    role: Literal["agent", "manager", "admin"]
    groups: tuple[str, ...] = ()
    # False: the person may not sign in, and no ticket should be handed to them.
    active: bool
    updated_at: datetime
    # On shift ("available"), away for a while, or off: set by the person or an admin at
    # intake. What each means for handing out tickets is routing's to decide.
    availability: Literal["available", "away", "off"] = "available"
