"""Per-category intake fields (D17, "ask once"): the desk file declares, for each category and
subcategory, what a new ticket must say (text, number, choice, date); a ticket is checked
against them and every problem is answered at once, in one 422."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any, Literal, NoReturn

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.functional_validators import AfterValidator

from spoc_intake.schemas import (
    MAX_FIELD_NUMBER,
    MAX_FIELD_TEXT,
    FieldName,
    FieldValue,
    OneLine,
    ShortText,
)

# As a ticket's `category` and `subcategory` are sent (ShortText), in the shape of the desk
# file's other ids.
CategoryId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _bounded(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_FIELD_NUMBER:
        raise ValueError("is out of range")
    return value


# int before float, strict: `min: 5` stays 5 in what GET /api/v1/categories shows; true is no
# number.
Bound = Annotated[StrictInt | StrictFloat, AfterValidator(_bounded)]


class WrongValue(Exception):
    """One answer a field does not take: a pydantic error type and a message."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


class _Field(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: FieldName
    label: OneLine
    required: bool = False
    help: OneLine | None = None

    def read(self, value: str | int | float | bool) -> str | int | float:
        """The answer as stored, or WrongValue. Never None or blank: those are no answer."""
        raise NotImplementedError


class TextField(_Field):
    type: Literal["text"]
    max_length: int = Field(default=MAX_FIELD_TEXT, ge=1, le=MAX_FIELD_TEXT)

    def read(self, value: str | int | float | bool) -> str:
        if not isinstance(value, str):
            raise WrongValue("string_type", "Input should be a valid string")
        if len(value) > self.max_length:
            raise WrongValue(
                "string_too_long", f"Input should have at most {self.max_length} characters"
            )
        return value


class NumberField(_Field):
    type: Literal["number"]
    min: Bound | None = None
    max: Bound | None = None
    integer: bool = False

    @model_validator(mode="after")
    def _range_not_empty(self) -> NumberField:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field '{self.name}': min {self.min} is above max {self.max}")
        return self

    def read(self, value: str | int | float | bool) -> int | float:
        # A string is not a number, even "3": clients send JSON numbers.
        if isinstance(value, bool) or not isinstance(value, int | float):
            if self.integer:
                raise WrongValue("int_type", "Input should be a valid integer")
            raise WrongValue("float_type", "Input should be a valid number")
        if self.integer:
            if isinstance(value, float) and not value.is_integer():
                raise WrongValue("int_from_float", "Input should be a whole number")
            value = int(value)
        if self.min is not None and value < self.min:
            raise WrongValue(
                "greater_than_equal", f"Input should be greater than or equal to {self.min}"
            )
        if self.max is not None and value > self.max:
            raise WrongValue("less_than_equal", f"Input should be less than or equal to {self.max}")
        return value


class ChoiceField(_Field):
    type: Literal["choice"]
    choices: tuple[ShortText, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_choice_once(self) -> ChoiceField:
        twice = sorted({c for c in self.choices if self.choices.count(c) > 1})
        if twice:
            raise ValueError(f"field '{self.name}': choices {twice} appear more than once")
        return self

    def read(self, value: str | int | float | bool) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        listed = ", ".join(f"'{c}'" for c in self.choices)
        raise WrongValue("literal_error", f"Input should be one of {listed}")


class DateField(_Field):
    type: Literal["date"]
    not_before: date | None = None
    not_after: date | None = None

    @model_validator(mode="after")
    def _range_not_empty(self) -> DateField:
        if self.not_before and self.not_after and self.not_before > self.not_after:
            raise ValueError(
                f"field '{self.name}': not_before {self.not_before} is after "
                f"not_after {self.not_after}"
            )
        return self

    def read(self, value: str | int | float | bool) -> str:
        if not isinstance(value, str):
            raise WrongValue("date_type", "Input should be a date as text, YYYY-MM-DD")
        try:
            # Only the one ISO form: fromisoformat alone also takes 20261201 and 2026-W49-2.
            day = date.fromisoformat(value) if ISO_DATE.fullmatch(value) else None
        except ValueError:
            day = None
        if day is None:
            raise WrongValue("date_parsing", "Input should be a valid date, YYYY-MM-DD")
        if self.not_before and day < self.not_before:
            raise WrongValue("greater_than_equal", f"Input should be on or after {self.not_before}")
        if self.not_after and day > self.not_after:
            raise WrongValue("less_than_equal", f"Input should be on or before {self.not_after}")
        return day.isoformat()


IntakeField = Annotated[
    TextField | NumberField | ChoiceField | DateField, Field(discriminator="type")
]


def _names_once(fields: Sequence[_Field], where: str) -> None:
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: fields {twice} are declared more than once")


def _ids_once(ids: Sequence[str], what: str) -> None:
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"{what} {twice} appear more than once")


class Subcategory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CategoryId
    name: OneLine
    # Asked on top of the category's own fields.
    fields: tuple[IntakeField, ...] = ()


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CategoryId
    name: OneLine
    fields: tuple[IntakeField, ...] = ()
    subcategories: tuple[Subcategory, ...] = ()

    @model_validator(mode="after")
    def _each_name_once_on_each_path(self) -> Category:
        _names_once(self.fields, f"category '{self.id}'")
        _ids_once([s.id for s in self.subcategories], f"category '{self.id}': subcategories")
        for sub in self.subcategories:
            _names_once((*self.fields, *sub.fields), f"category '{self.id}/{sub.id}'")
        return self

    def subcategory(self, id: str) -> Subcategory | None:
        return next((s for s in self.subcategories if s.id == id), None)


def check_category_ids(categories: Sequence[Category]) -> None:
    _ids_once([c.id for c in categories], "categories")


class CategoryList(BaseModel):
    """The desk's categories and what a new ticket in each must say; empty when the desk
    declares none (then category and fields are free)."""

    items: tuple[Category, ...]


Problem = dict[str, Any]


def _problem(loc: tuple[str, ...], type: str, message: str, value: object = None) -> Problem:
    return {"loc": ("body", *loc), "type": type, "msg": message, "input": value}


def _refuse(problems: list[Problem]) -> NoReturn:
    # As FastAPI's own validation: one 422 in intake's error shape, every problem in it.
    raise RequestValidationError(problems)


def _refuse_one(loc: str, message: str, value: object) -> NoReturn:
    _refuse([_problem((loc,), "value_error", message, value)])


def _find(categories: Sequence[Category], id: str) -> Category | None:
    return next((c for c in categories if c.id == id), None)


def _unknown_category(categories: Sequence[Category], id: str) -> Problem:
    allowed = ", ".join(f"'{c.id}'" for c in categories)
    return _problem(
        ("category",), "unknown_category", f"'{id}' is not a category here; one of {allowed}", id
    )


def _unknown_subcategory(category: Category, id: str) -> Problem:
    if not category.subcategories:
        message = f"category '{category.id}' has no subcategories"
    else:
        allowed = ", ".join(f"'{s.id}'" for s in category.subcategories)
        message = f"'{id}' is not a subcategory of '{category.id}'; one of {allowed}"
    return _problem(("subcategory",), "unknown_subcategory", message, id)


def check_new_ticket(
    categories: Sequence[Category],
    category: str | None,
    subcategory: str | None,
    fields: Mapping[str, FieldValue],
    *,
    category_required: bool = False,
) -> dict[str, FieldValue]:
    """The ticket's fields as stored (text stripped, dates as YYYY-MM-DD, whole numbers as
    integers, unanswered ones left out), or a RequestValidationError naming every problem.
    With no categories declared, fields are free. With categories, a ticket without one (routing
    may classify it later) has no fields: they are a category's (D17), so none can be sent
    around its check; `category_required` (the desk file's) asks every ticket for a category."""
    if not categories:
        return dict(fields)
    if category is None:
        _refuse_uncategorised(categories, subcategory, fields, category_required)
        return {}
    chosen = _find(categories, category)
    if chosen is None:
        _refuse([_unknown_category(categories, category)])
    problems: list[Problem] = []
    declared: tuple[IntakeField, ...] = chosen.fields
    sub_known = True
    if subcategory is not None:
        sub = chosen.subcategory(subcategory)
        if sub is None:
            problems.append(_unknown_subcategory(chosen, subcategory))
            sub_known = False
        else:
            declared = (*declared, *sub.fields)
    stored: dict[str, FieldValue] = {}
    for field in declared:
        value = fields.get(field.name)
        if isinstance(value, str):
            value = value.strip()
        # Null or blank is no answer (an HTML form sends a field left empty as "").
        if value is None or value == "":
            if field.required:
                problems.append(
                    _problem(("fields", field.name), "missing", f"Field required: {field.label}")
                )
            continue
        try:
            stored[field.name] = field.read(value)
        except WrongValue as wrong:
            problems.append(_problem(("fields", field.name), wrong.type, wrong.message, value))
    # An unknown subcategory's own fields cannot be told from misspelt ones: not listed then.
    if sub_known:
        names = {f.name for f in declared}
        path = chosen.id if subcategory is None else f"{chosen.id}/{subcategory}"
        for name in fields:
            if name not in names:
                problems.append(
                    _problem(
                        ("fields", name),
                        "extra_forbidden",
                        f"not a field of {path}; its fields: {', '.join(sorted(names)) or 'none'}",
                        fields[name],
                    )
                )
    if problems:
        _refuse(problems)
    return stored


def _refuse_uncategorised(
    categories: Sequence[Category],
    subcategory: str | None,
    fields: Mapping[str, FieldValue],
    category_required: bool,
) -> None:
    """Refuses, naming every problem, a ticket without a category that says more than it can:
    a subcategory, or any field (without a category there is no path to check it against)."""
    allowed = ", ".join(f"'{c.id}'" for c in categories)
    problems: list[Problem] = []
    if category_required:
        problems.append(
            _problem(("category",), "missing", f"Field required: a category, one of {allowed}")
        )
    if subcategory is not None:
        problems.append(
            _problem(
                ("subcategory",), "value_error", "a subcategory needs its category", subcategory
            )
        )
    for name, value in fields.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # no answer, as on a category's path
        problems.append(
            _problem(
                ("fields", name),
                "extra_forbidden",
                f"fields belong to a category; send a category too, one of {allowed}",
                value,
            )
        )
    if problems:
        _refuse(problems)


def still_declared(
    categories: Sequence[Category],
    category: str | None,
    subcategory: str | None,
    fields: Mapping[str, FieldValue],
) -> tuple[str | None, str | None, dict[str, FieldValue]]:
    """What of a stored classification the desk's categories declare today: the category if
    still one of them, the subcategory if still under it, and only the fields declared on that
    path with answers they still take; the rest is dropped, never refused (a follow-up copies
    an old ticket, and the desk file may have changed since). No categories: all is kept."""
    if not categories:
        return category, subcategory, dict(fields)
    chosen = _find(categories, category) if category is not None else None
    if chosen is None:
        return None, None, {}
    declared: tuple[IntakeField, ...] = chosen.fields
    sub = chosen.subcategory(subcategory) if subcategory is not None else None
    if sub is not None:
        declared = (*declared, *sub.fields)
    kept: dict[str, FieldValue] = {}
    for field in declared:
        value = fields.get(field.name)
        if value is None or value == "":
            continue
        try:
            kept[field.name] = field.read(value)
        except WrongValue:
            continue
    return chosen.id, sub.id if sub is not None else None, kept


def check_recategorisation(
    categories: Sequence[Category],
    sent: Mapping[str, str | None],
    current_category: str | None,
    current_subcategory: str | None,
) -> None:
    """Staff's new category and subcategory (`sent`, only what the PATCH names) must be the
    desk's, together with what the ticket keeps. The category's required fields are not asked
    for: the agent cannot invent the requester's answers, and a ticket may come to a category
    after it was opened."""
    if not categories or not {"category", "subcategory"} & set(sent):
        return
    category = sent.get("category") if "category" in sent else current_category
    subcategory = sent.get("subcategory") if "subcategory" in sent else current_subcategory
    # Where a problem is said: at what was sent, even when what the ticket keeps is the cause.
    at = "subcategory" if "subcategory" in sent else "category"
    if "category" in sent and category is not None and _find(categories, category) is None:
        _refuse([_unknown_category(categories, category)])
    if subcategory is None:
        return
    if category is None:
        _refuse_one(at, f"subcategory '{subcategory}' needs a category", subcategory)
    chosen = _find(categories, category)
    if chosen is None:
        _refuse_one(
            at,
            f"the ticket's category '{category}' is not one of the desk's: send a category too",
            subcategory,
        )
    if chosen.subcategory(subcategory) is None:
        if at == "subcategory":
            _refuse([_unknown_subcategory(chosen, subcategory)])
        # The ticket keeps a subcategory the new category does not have.
        _refuse_one(
            at,
            f"the ticket's subcategory '{subcategory}' is not one of '{chosen.id}': send a "
            "subcategory too, or null",
            category,
        )
