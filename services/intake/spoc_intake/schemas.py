"""Intake's HTTP models: what callers send and what they get back (apart from the ORM models)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)

TicketType = Literal["incident", "request", "complaint", "suggestion"]
Channel = Literal["portal", "email", "api", "chat", "phone"]
ContactChannel = Literal["email", "sms", "chat", "webhook", "phone", "portal"]
Level = Literal["high", "medium", "low"]

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
FieldValue = (
    Annotated[str, StringConstraints(max_length=2000)] | StrictInt | StrictFloat | StrictBool | None
)
MAX_FIELDS = 50


class RequesterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=320)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{4,30}$")
    locale: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35
    )
    preferred_channel: ContactChannel = "email"

    @model_validator(mode="after")
    def _reachable_on_chosen_channel(self) -> RequesterCreate:
        if self.preferred_channel in {"sms", "phone"} and not self.phone:
            raise ValueError(f"preferred_channel '{self.preferred_channel}' needs a phone number")
        return self


class TicketCreate(BaseModel):
    """A new request, incident, complaint or suggestion. Unknown fields are refused, not
    dropped, so a misspelt field name is caught at once."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=20_000)
    requester: RequesterCreate
    type: TicketType
    category: ShortText | None = None
    subcategory: ShortText | None = None
    item: ShortText | None = None
    impact: Level | None = None
    urgency: Level | None = None
    fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=MAX_FIELDS)
    channel: Channel = "api"


class TicketCreatedRead(BaseModel):
    id: uuid.UUID
    number: str
    status: str
    access_key: str = Field(description="Shown once: the requester's key to this ticket.")
    created_at: datetime


class PersonRead(BaseModel):
    name: str


class TeamRead(BaseModel):
    name: str
    tier: int | None


class TargetsRead(BaseModel):
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None


class TimelineEntryRead(BaseModel):
    at: datetime
    kind: str
    summary: str


class TicketRead(BaseModel):
    """The requester's view (D6–D11): status, priority, owner, team, targets and history."""

    id: uuid.UUID
    number: str
    status: str
    type: str
    channel: str
    subject: str
    description: str
    category: str | None
    subcategory: str | None
    item: str | None
    priority: str | None
    requester: PersonRead
    owner: PersonRead | None
    team: TeamRead | None
    targets: TargetsRead
    created_at: datetime
    updated_at: datetime
    timeline: list[TimelineEntryRead]
