"""Intake's HTTP models: what callers send and what they get back (apart from the ORM models)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

TicketType = Literal["incident", "request", "complaint", "suggestion"]
Channel = Literal["portal", "email", "api", "chat", "phone"]
ContactChannel = Literal["email", "sms", "chat", "webhook", "phone", "portal"]
Level = Literal["high", "medium", "low"]

_BLOCK_ALLOWED = {"\n", "\r", "\t"}


def _strip(value: object) -> object:
    # Surrounding whitespace is dropped before anything is checked, as it always has been: a
    # padded " +48 600 700 800 " is a phone number, and lengths count what is kept.
    return value.strip() if isinstance(value, str) else value


Stripped = BeforeValidator(_strip)

# The documented schema says what the validators enforce, as regular expressions every JSON
# Schema engine reads alike: explicit classes, no \s (whose meaning varies). Each allows the
# whitespace stripping drops around the text, and counts its length only between.
# Whitespace that is not a control character; with the controls below, what str.strip() drops.
_SPACES = r" \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_STRIPPED = rf"\t\n\x0b\x0c\r\x1c-\x1f{_SPACES}"
_CONTROLS = r"\x00-\x1f\x7f"
_BLOCK_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
FIELD_TEXT_PATTERN = rf"^[^{_BLOCK_CONTROLS}]*$"
# One line of any characters but control ones, for what is checked but never stripped.
NO_CONTROLS_PATTERN = rf"^[^{_CONTROLS}]*$"


def padded(core: str) -> str:
    """A pattern for `core` with any whitespace around it, as stripping accepts it."""
    return rf"^[{_STRIPPED}]*{core}[{_STRIPPED}]*$"


def _text_pattern(max_length: int, allowed_inside: str) -> str:
    # 1 to max_length characters once stripped: the first and last neither whitespace nor a
    # control character (or they would have been stripped), the rest `allowed_inside`.
    edge = f"[^{_CONTROLS}{_SPACES}]"
    return padded(rf"{edge}(?:{allowed_inside}{{0,{max_length - 2}}}{edge})?")


def _one_line_pattern(max_length: int) -> str:
    return _text_pattern(max_length, f"[^{_CONTROLS}]")


def _refuse_controls(value: str) -> str:
    # Control characters (NUL above all, which PostgreSQL cannot store) are refused, not dropped.
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _refuse_block_controls(value: str) -> str:
    if any((ch < " " and ch not in _BLOCK_ALLOWED) or ch == "\x7f" for ch in value):
        raise ValueError("must not contain control characters other than line breaks and tabs")
    return value


# Each: stripped first (the validator listed after the constraints runs before them), then
# limited, then refused if it holds control characters.
OneLine = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Stripped,
    AfterValidator(_refuse_controls),
    WithJsonSchema({"type": "string", "pattern": _one_line_pattern(200)}),
]
ShortText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    Stripped,
    AfterValidator(_refuse_controls),
    WithJsonSchema({"type": "string", "pattern": _one_line_pattern(100)}),
]
TextBlock = Annotated[
    str,
    StringConstraints(min_length=1, max_length=20_000),
    Stripped,
    AfterValidator(_refuse_block_controls),
    WithJsonSchema({"type": "string", "pattern": _text_pattern(20_000, f"[^{_BLOCK_CONTROLS}]")}),
]
PHONE_PATTERN = r"^\+?[0-9][0-9 ()-]{4,30}$"
Phone = Annotated[
    str,
    StringConstraints(pattern=PHONE_PATTERN),
    Stripped,
    # The same, ending on a character stripping keeps.
    WithJsonSchema({"type": "string", "pattern": padded(r"\+?[0-9][0-9 ()-]{3,29}[0-9()-]")}),
]
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
Locale = Annotated[
    str,
    StringConstraints(max_length=35, pattern=LOCALE_PATTERN),
    Stripped,
    # At most 35 characters once stripped: no run of 36 tag characters where the tag starts.
    WithJsonSchema(
        {
            "type": "string",
            "pattern": padded(r"(?![A-Za-z0-9-]{36})[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*"),
        }
    ),
]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
MAX_FIELD_TEXT = 2000
# What a BIGINT holds; a JSON number cannot say whether it is "integer" or not, so floats too.
MAX_FIELD_NUMBER = 2**63 - 1


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
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("number must be finite")
        if abs(value) > MAX_FIELD_NUMBER:
            raise ValueError("number is out of range")
        return value
    if isinstance(value, str):
        if not _is_utf8(value):
            raise ValueError("text must be valid Unicode (no lone surrogates)")
        if len(value) > MAX_FIELD_TEXT:
            raise ValueError(f"text is longer than {MAX_FIELD_TEXT} characters")
        return _refuse_block_controls(value)
    raise ValueError("must be text, a number, true/false or null (not a list or an object)")


FieldValue = Annotated[
    str | int | float | bool | None,
    PlainValidator(_field_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_FIELD_TEXT, "pattern": FIELD_TEXT_PATTERN},
                {"type": "number", "minimum": -MAX_FIELD_NUMBER, "maximum": MAX_FIELD_NUMBER},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
MAX_FIELDS = 50


# "Ann <ann@example.org>" is read as the address alone, as it always has been.
_NAMED_ADDRESS = re.compile(r"[^<>]*<([^<>]+)>")


def _email_address(value: str) -> str:
    """The address as mail servers take it: the domain IDNA-encoded (bücher.de becomes
    xn--bcher-kva.de). A non-ASCII part before the @ needs SMTPUTF8, which notify cannot
    promise yet, so it is refused now rather than accepted and never acknowledged."""
    named = _NAMED_ADDRESS.fullmatch(value)
    address = named.group(1).strip() if named else value
    try:
        # Well-formed is enough, as the documented `format: email` says: an address at a .test
        # domain (RFC 2606, kept for testing) or a dotless one (root@intranet) is an address
        # too; whether mail reaches it is the desk's business. The other special-use names
        # (.localhost, .local, .invalid, .onion, .arpa) are still refused.
        parsed = validate_email(
            address, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as error:
        raise PydanticCustomError(
            "value_error", "value is not a valid email address: {reason}", {"reason": str(error)}
        ) from error
    if parsed.ascii_email is None:
        raise ValueError("addresses with non-ASCII characters before the @ are not supported yet")
    return parsed.ascii_email


EmailAddress = Annotated[
    str,
    StringConstraints(max_length=320),
    Stripped,
    AfterValidator(_email_address),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 320}),
]


def email_key(address: str) -> str:
    """What two spellings of one address have in common, for matching: the address is kept
    as given (for display), but Reza@Example.org and reza@example.org are one person. The
    whole address, though RFC 5321 lets a server tell local parts apart by case: none of the
    desk's does, and one requester seen as two would miss their own tickets."""
    return address.strip().lower()


class RequesterCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # `_reachable_on_chosen_channel`, said in the schema too.
        json_schema_extra={
            "if": {
                "properties": {"preferred_channel": {"enum": ["sms", "phone"]}},
                "required": ["preferred_channel"],
            },
            "then": {"properties": {"phone": {"type": "string"}}, "required": ["phone"]},
        },
    )

    name: OneLine
    email: EmailAddress
    phone: Phone | None = None
    locale: Locale | None = None
    preferred_channel: ContactChannel = "email"

    @model_validator(mode="after")
    def _reachable_on_chosen_channel(self) -> RequesterCreate:
        if self.preferred_channel in {"sms", "phone"} and not self.phone:
            raise ValueError(f"preferred_channel '{self.preferred_channel}' needs a phone number")
        return self


class PublicTicketCreate(BaseModel):
    """A new request, incident, complaint or suggestion, as the public and integrations send
    it. Unknown fields are refused, not dropped, so a misspelt field name is caught at once."""

    model_config = ConfigDict(extra="forbid")

    subject: OneLine
    description: TextBlock
    requester: RequesterCreate
    type: TicketType
    category: ShortText | None = None
    subcategory: ShortText | None = None
    item: ShortText | None = None
    impact: Level | None = None
    urgency: Level | None = None
    fields: dict[FieldName, FieldValue] = Field(
        default_factory=dict,
        max_length=MAX_FIELDS,
        # A name that does not match FieldName is refused, as the schema now says too.
        json_schema_extra={"additionalProperties": False},
        description="Answers to the category's intake fields (GET /api/v1/categories): when "
        "the desk declares categories, a ticket in one must answer its required fields and "
        "send no others (D17); otherwise free",
    )
    channel: Channel = "api"


class CallResolution(BaseModel):
    """What the agent did while the caller was still on the line."""

    model_config = ConfigDict(extra="forbid")

    summary: TextBlock = Field(
        description="The answer given on the call: the ticket's first (public) reply"
    )


class TicketCreate(PublicTicketCreate):
    """A new ticket, with what only staff may add: a phone call they took and solved at once
    (`resolved_during_call`, D4: first-contact resolution). From the public and integrations
    `resolved_during_call` is an unknown field (422), as any unknown field is."""

    model_config = ConfigDict(
        extra="forbid",
        # `_solved_on_a_call`, said in the schema too.
        json_schema_extra={
            "if": {
                "properties": {"resolved_during_call": {"type": "object"}},
                "required": ["resolved_during_call"],
            },
            "then": {"properties": {"channel": {"const": "phone"}}, "required": ["channel"]},
        },
    )

    # Null: not solved during the call, as when it is left out.
    resolved_during_call: CallResolution | None = Field(
        default=None,
        description="Staff only, with channel `phone`: the call solved the problem; the "
        "ticket opens resolved, with `summary` as its first reply",
    )

    # On the field, not the model, so the 422 names it (`channel` is checked before it).
    @field_validator("resolved_during_call")
    @classmethod
    def _solved_on_a_call(
        cls, value: CallResolution | None, info: ValidationInfo
    ) -> CallResolution | None:
        if value is not None and info.data.get("channel", "phone") != "phone":
            raise ValueError("is for a phone call: send channel 'phone'")
        return value


class TicketCreatedRead(BaseModel):
    id: uuid.UUID
    number: str
    status: str
    access_key: str | None = Field(
        description="Shown once: the requester's key to this ticket. Null when an anonymous "
        "request is replayed under its Idempotency-Key: the requester has the key by mail."
    )
    created_at: datetime


class FollowUpCreatedRead(TicketCreatedRead):
    """A requester's reply that came too late for its ticket (closed, or resolved longer ago
    than the reopen window) opened this new ticket, linked to the old one."""

    follows_up: str = Field(description="The ticket replied to")


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


Visibility = Literal["public", "internal"]


class AuthorRead(BaseModel):
    name: str
    kind: Literal["requester", "agent", "system"]


class CommentRead(BaseModel):
    id: uuid.UUID
    at: datetime
    author: AuthorRead
    visibility: Visibility
    body: str


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
    # The conversation: public replies only, in the requester's view.
    comments: list[CommentRead] = Field(default_factory=list)
    follows_up: str | None = Field(
        default=None,
        description="The earlier ticket this one follows up (the requester wrote after it was "
        "closed, or after its reopen window)",
    )


# The id routing knows an agent or a group by (its desk file's ids have the same shape).
StaffId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
GroupId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]

# --- The conversation and the workflow (work.py) ----------------------------------------------

TicketStatus = Literal["new", "open", "in_progress", "pending", "resolved", "closed"]
MAX_REASON = 2000
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REASON),
    Stripped,
    AfterValidator(_refuse_block_controls),
    WithJsonSchema(
        {"type": "string", "pattern": _text_pattern(MAX_REASON, f"[^{_BLOCK_CONTROLS}]")}
    ),
]


class RequesterCommentCreate(BaseModel):
    """A requester's reply: always public, so there is nothing to choose."""

    model_config = ConfigDict(extra="forbid")

    body: TextBlock


class StaffCommentCreate(BaseModel):
    """A reply by staff, to the requester (`public`) or to colleagues only (`internal`).
    A requester sends `body` only: `visibility` from a requester is an unknown field (422)."""

    model_config = ConfigDict(extra="forbid")

    body: TextBlock
    visibility: Visibility = "public"


class StatusChange(BaseModel):
    """A move along the workflow; `pending` needs a reason (what the requester must do)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"to": {"const": "pending"}}, "required": ["to"]},
            "then": {"required": ["reason"]},
        },
    )

    to: TicketStatus
    # Not null in the document: a `pending` with a null reason is as invalid as one without.
    reason: Reason | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _pending_says_why(self) -> StatusChange:
        if self.to == "pending" and not self.reason:
            raise ValueError("'pending' needs a reason: what the requester must do")
        return self


class StatusChangedRead(BaseModel):
    number: str
    from_status: TicketStatus
    to_status: TicketStatus
    at: datetime


class RequesterRead(PersonRead):
    email: str
    phone: str | None


class AgentTimelineEntryRead(TimelineEntryRead):
    public: bool = Field(description="Shown to the requester; false: for staff only")


SlaState = Literal["running", "paused", "at_risk", "breached", "met"]
# What agents filter a list by (`?sla=`): the clocks that need them.
SlaAttention = Literal["at_risk", "breached"]


class SlaMetricRead(BaseModel):
    state: SlaState | None = Field(description="None until sla starts this clock")
    due_at: datetime | None
    breached_at: datetime | None
    met_at: datetime | None = Field(description="Also set on a breached target met late")


class SlaRead(BaseModel):
    """Where the ticket stands against its targets (staff only: the requester sees targets)."""

    state: SlaState | None = Field(description="The most urgent of the metrics' states")
    first_response: SlaMetricRead
    resolution: SlaMetricRead


class NotificationRead(BaseModel):
    """A notification notify reported for this ticket: delivered, or given up on."""

    at: datetime
    kind: str = Field(description="What it was for, e.g. `acknowledgement`")
    channel: str
    recipient: str
    recipient_kind: Literal["requester", "other"]
    outcome: Literal["sent", "failed"]
    attempts: int | None = Field(description="Failed ones: the tries before notify gave up")
    error: str | None


_NO_CLOCK = SlaMetricRead(state=None, due_at=None, breached_at=None, met_at=None)


class AssigneeRead(BaseModel):
    id: str
    name: str


class TicketAgentRead(TicketRead):
    """The agent's view: everything, including internal notes, notifications and the
    requester's contact details."""

    requester: RequesterRead
    impact: str | None
    urgency: str | None
    group_id: str | None
    owner_id: str | None
    assignee: AssigneeRead | None = Field(
        default=None,
        description="Escalated: who in the helping group works on it (the owner stays the "
        "requester's contact)",
    )
    first_responded_at: datetime | None
    resolved_at: datetime | None
    taken_by: str | None = Field(
        default=None, description="A logged phone call: the staff id of the agent who took it"
    )
    first_contact_resolution: bool = Field(
        default=False, description="Solved while the caller was on the line (D4)"
    )
    auto_classified: bool = Field(
        default=False,
        description="Routing chose the category from the ticket's words (it came without one)",
    )
    tags: list[str] = Field(default_factory=list, description="Given by the desk's routing rules")
    timeline: list[AgentTimelineEntryRead]  # type: ignore[assignment]
    sla: SlaRead = Field(
        default=SlaRead(state=None, first_response=_NO_CLOCK, resolution=_NO_CLOCK)
    )
    notifications: list[NotificationRead] = Field(default_factory=list)


class TicketSummaryRead(BaseModel):
    """One line of a ticket list: the same shape for requesters and for staff."""

    id: uuid.UUID
    number: str
    status: str
    type: str
    channel: str
    subject: str
    category: str | None
    priority: str | None
    owner: PersonRead | None
    team: TeamRead | None
    created_at: datetime
    updated_at: datetime


class TicketList(BaseModel):
    items: list[TicketSummaryRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class FeedbackCreate(BaseModel):
    """The requester's rating of a resolution (D16): once per ticket."""

    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5)
    comment: Reason | None = None


class FeedbackRead(BaseModel):
    number: str
    rating: int
    comment: str | None
    at: datetime


class TicketUpdate(BaseModel):
    """What staff re-classify (D23, D24): only the fields sent change; null clears one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    type: TicketType | SkipJsonSchema[None] = None
    category: ShortText | None = None
    subcategory: ShortText | None = None
    item: ShortText | None = None
    impact: Level | None = None
    urgency: Level | None = None

    @model_validator(mode="after")
    def _says_what_changes(self) -> TicketUpdate:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        if "type" in self.model_fields_set and self.type is None:
            raise ValueError("a ticket always has a type: it can be changed, not cleared")
        return self


class EscalationCreate(BaseModel):
    """A functional escalation: another group is asked to help; the owner stays (D3)."""

    model_config = ConfigDict(extra="forbid")

    to_group: ShortText = Field(description="The id of the group asked to help")
    reason: Reason


class AssignmentCreate(BaseModel):
    """Who should work on the ticket: a person (yourself, to take it; or a colleague), a group
    (whose strategy picks the person), or a person within a group. Routing decides."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["agent"]}, {"required": ["group"]}]},
    )

    # Not null in the document (as if left out): the request names an agent, a group or both.
    agent: StaffId | SkipJsonSchema[None] = Field(
        default=None, description="The staff id of the person"
    )
    group: GroupId | SkipJsonSchema[None] = Field(
        default=None, description="The id of the group (default: the person's own group)"
    )
    reason: Reason | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _someone(self) -> AssignmentCreate:
        if self.agent is None and self.group is None:
            raise ValueError("name an agent, a group, or both")
        return self


class AssignmentRequestedRead(BaseModel):
    number: str
    agent: str | None
    group: str | None
    requested_at: datetime


class HandBackCreate(BaseModel):
    """The helping group is done: the work goes back to the group that asked (D3)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class HandBackRequestedRead(BaseModel):
    number: str
    requested_at: datetime


class EscalationRequestedRead(BaseModel):
    number: str
    to_group: str
    requested_at: datetime
