"""Intake's part of the desk configuration (section `intake:`): the staff it keeps in line and
the categories a new ticket is asked about (categories.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from spoc_intake.categories import Category, check_category_ids
from spoc_intake.schemas import email_key
from spoc_intake.staff import StaffEntry


class IntakeDesk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Created or brought in line at each start (never their passwords or active flag).
    staff: tuple[StaffEntry, ...] = ()
    # None declared: a ticket's category is free text and its fields free, as before D17.
    categories: tuple[Category, ...] = ()
    # With categories declared: whether every new ticket must name one (off: routing may
    # classify a ticket that came without, and then it carries no fields).
    category_required: bool = False

    @model_validator(mode="after")
    def _each_person_once(self) -> IntakeDesk:
        ids = [entry.id for entry in self.staff]
        emails = [email_key(entry.email) for entry in self.staff]
        if len(set(ids)) != len(ids) or len(set(emails)) != len(emails):
            raise ValueError("each staff id and e-mail address may appear only once")
        return self

    @model_validator(mode="after")
    def _each_category_once(self) -> IntakeDesk:
        check_category_ids(self.categories)
        return self
