"""Intake's HTTP models: what callers send and what they get back (apart from the ORM models)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainValidator,
    StringConstraints,
    model_validator,
)

TicketType = Literal["incident", "request", "complaint", "suggestion"]
Channel = Literal["portal", "email", "api", "chat", "phone"]
ContactChannel = Literal["email", "sms", "chat", "webhook", "phone", "portal"]
Level = Literal["high", "medium", "low"]

_BLOCK_ALLOWED = {"\n", "\r", "\t"}


def _one_line(value: str) -> str:
    # Control characters (NUL above all, which PostgreSQL cannot store) are refused, not dropped.
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _text_block(value: str) -> str:
    if any((ch < " " and ch not in _BLOCK_ALLOWED) or ch == "\x7f" for ch in value):
        raise ValueError("must not contain control characters other than line breaks and tabs")
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
TextBlock = Annotated[str, AfterValidator(_text_block)]
ShortText = Annotated[
    OneLine, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
MAX_FIELD_TEXT = 2000


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field_value(value: object) -> object:
    """A per-category intake field (D17): text, a finite number, true/false or null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > 2**63 - 1:
            raise ValueError("number is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("number must be finite")
        return value
    if isinstance(value, str):
        if not _is_utf8(value):
            raise ValueError("text must be valid Unicode (no lone surrogates)")
        if len(value) > MAX_FIELD_TEXT:
            raise ValueError(f"text is longer than {MAX_FIELD_TEXT} characters")
        return _text_block(value)
    raise ValueError("must be text, a number, true/false or null (not a list or an object)")


FieldValue = Annotated[str | int | float | bool | None, PlainValidator(_field_value)]
MAX_FIELDS = 50


def _ascii_address(value: str) -> str:
    """The address as mail servers take it: the domain IDNA-encoded (bücher.de becomes
    xn--bcher-kva.de). A non-ASCII part before the @ needs SMTPUTF8, which notify cannot
    promise yet, so it is refused now rather than accepted and never acknowledged."""
    ascii_email = validate_email(value, check_deliverability=False).ascii_email
    if ascii_email is None:
        raise ValueError("addresses with non-ASCII characters before the @ are not supported yet")
    return ascii_email


class RequesterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: OneLine = Field(min_length=1, max_length=200)
    email: Annotated[EmailStr, AfterValidator(_ascii_address)] = Field(max_length=320)
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

    subject: OneLine = Field(min_length=1, max_length=200)
    description: TextBlock = Field(min_length=1, max_length=20_000)
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
