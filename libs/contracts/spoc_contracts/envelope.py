"""The envelope every event travels in, and the base class of every event payload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError


class InvalidEnvelope(ValueError):
    """A message that can never be handled: not JSON, not an envelope, or an unknown event."""


class Event(BaseModel):
    """A fact in past tense. Subclasses set TYPE and VERSION; a breaking change is a new class."""

    # Consumers ignore fields they do not know, so producers can add fields without a new version.
    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: uuid.UUID
    type: str = Field(pattern=r"^[a-z][a-z_]*\.[a-z][a-z_]*$", max_length=100)
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    source: str = Field(min_length=1, max_length=50)
    ticket_id: uuid.UUID | None = None
    sequence: int = Field(default=0, ge=0)
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        ticket_id: uuid.UUID | None,
        sequence: int,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
    ) -> Envelope:
        event_id = uuid.uuid4()
        return cls(
            id=event_id,
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=utc_now(),
            source=source,
            ticket_id=ticket_id,
            sequence=sequence,
            # A journey's first event starts its own correlation.
            correlation_id=correlation_id or event_id,
            causation_id=causation_id,
            data=event.model_dump(mode="json"),
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        try:
            return cls.model_validate_json(body)
        except ValidationError as error:
            raise InvalidEnvelope(
                f"not a valid envelope: {error.errors(include_url=False)}"
            ) from error

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
