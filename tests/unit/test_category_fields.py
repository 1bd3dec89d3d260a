"""Per-category intake fields (D17): what the desk file may declare, and how a new ticket's
fields are checked against it (every problem at once) or re-categorised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from spoc_intake.categories import (
    Category,
    check_new_ticket,
    check_recategorisation,
    still_declared,
)
from spoc_intake.desk import IntakeDesk
from spoc_platform.desk_config import DeskConfigError, load_section

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).parents[2] / "docs" / "desk.example.yaml"

PRINTER: dict[str, Any] = {
    "id": "printer",
    "name": "Printer",
    "fields": [
        {"name": "problem", "label": "Problem", "type": "choice", "required": True,
         "choices": ["paper jam", "offline"]},
        {"name": "floor", "label": "Floor", "type": "number", "integer": True, "min": -2,
         "max": 40},
    ],
}  # fmt: skip
HARDWARE: dict[str, Any] = {
    "id": "hardware",
    "name": "Hardware",
    "fields": [
        {"name": "asset_tag", "label": "Asset tag", "type": "text", "required": True,
         "max_length": 8},
    ],
    "subcategories": [PRINTER, {"id": "laptop", "name": "Laptop"}],
}  # fmt: skip
ACCESS: dict[str, Any] = {
    "id": "access",
    "name": "Access",
    "fields": [
        {"name": "start_date", "label": "Start date", "type": "date", "required": True,
         "not_before": "2026-01-01", "not_after": "2026-12-31"},
        {"name": "weight", "label": "Weight", "type": "number", "min": 0.5, "max": 2},
    ],
}  # fmt: skip


def desk(*categories: dict[str, Any]) -> tuple[Category, ...]:
    return IntakeDesk.model_validate({"categories": list(categories)}).categories


CATEGORIES = desk(HARDWARE, ACCESS, {"id": "network", "name": "Network"})


def problems_of(
    category: str | None, subcategory: str | None, fields: dict[str, Any]
) -> list[tuple[str, str]]:
    """(where, type) of each problem the check names, in its order; [] if none."""
    try:
        check_new_ticket(CATEGORIES, category, subcategory, fields)
    except RequestValidationError as refused:
        return [(".".join(e["loc"][1:]), e["type"]) for e in refused.errors()]
    return []


def refusal(category: str | None, subcategory: str | None, fields: dict[str, Any]) -> str:
    with pytest.raises(RequestValidationError) as refused:
        check_new_ticket(CATEGORIES, category, subcategory, fields)
    [error] = refused.value.errors()
    return str(error["msg"])


# --- What the desk file may declare ----------------------------------------------------------


def test_the_example_desk_file_declares_categories_for_intake() -> None:
    example = load_section(EXAMPLE, "intake", IntakeDesk)
    hardware = next(c for c in example.categories if c.id == "hardware")
    printer = hardware.subcategory("printer")
    assert printer is not None
    assert [f.name for f in (*hardware.fields, *printer.fields)][:2] == ["asset_tag", "problem"]
    # The first journey's category (tests/e2e/journey.py) asks for nothing.
    network = next(c for c in example.categories if c.id == "network")
    assert not [f for f in network.fields if f.required] and not network.subcategories


def test_no_categories_is_the_default() -> None:
    assert IntakeDesk().categories == ()


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ([HARDWARE, {**ACCESS, "id": "hardware"}], "categories ['hardware'] appear more than once"),
        (
            [{**HARDWARE, "subcategories": [PRINTER, PRINTER]}],
            "category 'hardware': subcategories ['printer'] appear more than once",
        ),
        (
            [{**HARDWARE, "subcategories": [{**PRINTER, "fields": [HARDWARE["fields"][0]]}]}],
            "category 'hardware/printer': fields ['asset_tag'] are declared more than once",
        ),
        (
            [{**ACCESS, "fields": [*ACCESS["fields"], ACCESS["fields"][1]]}],
            "category 'access': fields ['weight'] are declared more than once",
        ),
        (
            [{**ACCESS, "fields": [{"name": "x", "label": "X", "type": "choice", "choices": []}]}],
            "at least 1 item",
        ),
        (
            [
                {
                    **ACCESS,
                    "fields": [
                        {"name": "x", "label": "X", "type": "choice", "choices": ["a", "b", "a"]}
                    ],
                }
            ],
            "field 'x': choices ['a'] appear more than once",
        ),
        (
            [
                {
                    **ACCESS,
                    "fields": [{"name": "n", "label": "N", "type": "number", "min": 5, "max": 1}],
                }
            ],
            "field 'n': min 5 is above max 1",
        ),
        (
            [
                {
                    **ACCESS,
                    "fields": [
                        {
                            "name": "d",
                            "label": "D",
                            "type": "date",
                            "not_before": "2026-02-01",
                            "not_after": "2026-01-01",
                        }
                    ],
                }
            ],
            "field 'd': not_before 2026-02-01 is after not_after 2026-01-01",
        ),
        (
            [
                {
                    **ACCESS,
                    "fields": [{"name": "t", "label": "T", "type": "text", "max_length": 2001}],
                }
            ],
            "less than or equal to 2000",
        ),
        (
            [{**ACCESS, "fields": [{"name": "t", "label": "T", "type": "colour"}]}],
            "does not match any of the expected tags: 'text', 'number', 'choice', 'date'",
        ),
        (
            [{**ACCESS, "fields": [{"name": "t", "label": "T", "type": "text", "min": 1}]}],
            "Extra inputs are not permitted",
        ),
        (
            [{**ACCESS, "fields": [{"name": "1st", "label": "T", "type": "text"}]}],
            "String should match pattern",
        ),
        ([{**ACCESS, "id": "Access Team"}], "String should match pattern"),
        ([{**ACCESS, "colour": "red"}], "Extra inputs are not permitted"),
        (
            [
                {
                    **ACCESS,
                    "fields": [{"name": "n", "label": "N", "type": "number", "max": float("inf")}],
                }
            ],
            "must be a finite number",
        ),
        (
            [{**ACCESS, "fields": [{"name": "n", "label": "N", "type": "number", "min": True}]}],
            "fields.0.number.min",
        ),
    ],
    ids=[
        "category-twice",
        "subcategory-twice",
        "field-on-category-and-subcategory",
        "field-twice",
        "no-choices",
        "choice-twice",
        "min-above-max",
        "dates-the-wrong-way",
        "text-too-long",
        "unknown-type",
        "option-of-another-type",
        "bad-field-name",
        "bad-category-id",
        "unknown-key",
        "infinite-bound",
        "boolean-bound",
    ],
)
def test_a_broken_category_tree_is_refused_naming_the_entry(
    tmp_path: Path, broken: list[dict[str, Any]], said: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        IntakeDesk.model_validate({"categories": broken})
    assert said in str(refused.value)


def test_the_desk_file_names_where_a_category_is_broken(tmp_path: Path) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(
        "intake:\n"
        "  categories:\n"
        "    - id: hardware\n"
        "      name: Hardware\n"
        "      fields: [{name: tag, label: Tag, type: text}]\n"
        "      subcategories:\n"
        "        - {id: printer, name: Printer, fields: [{name: tag, label: T, type: text}]}\n"
    )
    with pytest.raises(DeskConfigError) as refused:
        load_section(desk_file, "intake", IntakeDesk)
    said = str(refused.value)
    assert "section 'intake' is invalid" in said and "categories.0" in said
    assert "category 'hardware/printer': fields ['tag'] are declared more than once" in said


def test_the_category_tree_cannot_be_changed_once_loaded() -> None:
    with pytest.raises(ValidationError):
        CATEGORIES[0].id = "other"  # type: ignore[misc]


# --- A new ticket's fields --------------------------------------------------------------------


def test_good_answers_are_kept_as_stored() -> None:
    stored = check_new_ticket(
        CATEGORIES,
        "hardware",
        "printer",
        {"asset_tag": "  HW-1 ", "problem": "offline", "floor": 3.0},
    )
    assert stored == {"asset_tag": "HW-1", "problem": "offline", "floor": 3}
    assert isinstance(stored["floor"], int)
    assert check_new_ticket(CATEGORIES, "access", None, {"start_date": "2026-03-01"}) == {
        "start_date": "2026-03-01"
    }


def test_optional_fields_left_empty_or_null_are_not_stored() -> None:
    stored = check_new_ticket(
        CATEGORIES,
        "hardware",
        "printer",
        {"asset_tag": "HW-1", "problem": "offline", "floor": None},
    )
    assert stored == {"asset_tag": "HW-1", "problem": "offline"}
    assert check_new_ticket(
        CATEGORIES, "access", None, {"start_date": "2026-03-01", "weight": ""}
    ) == {"start_date": "2026-03-01"}


def test_every_problem_is_named_at_once() -> None:
    assert problems_of(
        "hardware",
        "printer",
        {"asset_tag": "", "problem": "on fire", "floor": 41, "colour": "red", "size": 1},
    ) == [
        ("fields.asset_tag", "missing"),
        ("fields.problem", "literal_error"),
        ("fields.floor", "less_than_equal"),
        ("fields.colour", "extra_forbidden"),
        ("fields.size", "extra_forbidden"),
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"asset_tag": 12}, "string_type"),
        ({"asset_tag": True}, "string_type"),
        ({"asset_tag": "HW-123456"}, "string_too_long"),
        ({"asset_tag": None}, "missing"),
        ({"asset_tag": "   "}, "missing"),
    ],
    ids=["number", "boolean", "too-long", "null", "blank"],
)
def test_a_text_field_takes_text_of_its_length(fields: dict[str, Any], expected: str) -> None:
    assert problems_of("hardware", None, fields) == [("fields.asset_tag", expected)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", "int_type"),
        (True, "int_type"),
        (2.5, "int_from_float"),
        (-3, "greater_than_equal"),
        (41, "less_than_equal"),
    ],
    ids=["text", "boolean", "fraction", "below", "above"],
)
def test_a_number_field_takes_numbers_in_its_range(value: Any, expected: str) -> None:
    fields = {"asset_tag": "HW-1", "problem": "offline", "floor": value}
    assert problems_of("hardware", "printer", fields) == [("fields.floor", expected)]


def test_a_number_field_that_is_not_integer_takes_fractions_and_says_its_bounds() -> None:
    assert check_new_ticket(
        CATEGORIES, "access", None, {"start_date": "2026-03-01", "weight": 1.25}
    ) == {"start_date": "2026-03-01", "weight": 1.25}
    assert refusal("access", None, {"start_date": "2026-03-01", "weight": 0.25}) == (
        "Input should be greater than or equal to 0.5"
    )
    assert problems_of("access", None, {"start_date": "2026-03-01", "weight": "1"}) == [
        ("fields.weight", "float_type")
    ]


def test_a_choice_field_names_its_choices() -> None:
    fields = {"asset_tag": "HW-1", "problem": "Offline"}
    assert refusal("hardware", "printer", fields) == "Input should be one of 'paper jam', 'offline'"
    assert problems_of("hardware", "printer", {**fields, "problem": 1}) == [
        ("fields.problem", "literal_error")
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-30", "date_parsing"),
        ("20260301", "date_parsing"),
        ("2026-03-01T10:00:00", "date_parsing"),
        ("1 March 2026", "date_parsing"),
        (20260301, "date_type"),
        ("2025-12-31", "greater_than_equal"),
        ("2027-01-01", "less_than_equal"),
    ],
    ids=["no-such-day", "basic-format", "a-time", "words", "number", "too-early", "too-late"],
)
def test_a_date_field_takes_iso_dates_in_its_range(value: Any, expected: str) -> None:
    assert problems_of("access", None, {"start_date": value}) == [("fields.start_date", expected)]


def test_an_unknown_category_names_the_allowed_ones() -> None:
    assert refusal("printers", None, {}) == (
        "'printers' is not a category here; one of 'hardware', 'access', 'network'"
    )
    assert problems_of("printers", None, {}) == [("category", "unknown_category")]


def test_a_subcategory_must_be_the_categorys_own() -> None:
    assert refusal("hardware", "scanner", {"asset_tag": "HW-1"}) == (
        "'scanner' is not a subcategory of 'hardware'; one of 'printer', 'laptop'"
    )
    assert refusal("network", "vpn", {}) == "category 'network' has no subcategories"
    assert refusal(None, "printer", {}) == "a subcategory needs its category"


def test_an_unknown_subcategory_still_checks_the_categorys_own_fields() -> None:
    # Fields meant for the misspelt subcategory are not called undeclared on top.
    assert problems_of("hardware", "scaner", {"dpi": 600}) == [
        ("subcategory", "unknown_subcategory"),
        ("fields.asset_tag", "missing"),
    ]


def test_a_subcategorys_fields_are_asked_only_on_its_path() -> None:
    assert problems_of("hardware", "laptop", {"asset_tag": "HW-1", "floor": 2}) == [
        ("fields.floor", "extra_forbidden")
    ]
    assert check_new_ticket(CATEGORIES, "hardware", None, {"asset_tag": "HW-1"}) == {
        "asset_tag": "HW-1"
    }


def test_without_categories_fields_stay_free() -> None:
    free: dict[str, Any] = {"anything": "goes", "n": 1.5, "flag": True, "none": None}
    assert check_new_ticket((), "whatever", "sub", free) == free
    assert check_new_ticket((), None, None, free) == free


def test_with_categories_a_ticket_without_one_has_no_fields() -> None:
    # Fields are a category's (D17): without one, none can be checked, so none is taken.
    assert check_new_ticket(CATEGORIES, None, None, {}) == {}
    # Null or blank is no answer, as on a category's path.
    assert check_new_ticket(CATEGORIES, None, None, {"none": None, "blank": " "}) == {}
    assert problems_of(None, None, {"asset_tag": "HW-1", "anything": "goes", "none": None}) == [
        ("fields.asset_tag", "extra_forbidden"),
        ("fields.anything", "extra_forbidden"),
    ]
    assert refusal(None, None, {"anything": "goes"}) == (
        "fields belong to a category; send a category too, one of 'hardware', 'access', 'network'"
    )
    # Every problem at once.
    assert problems_of(None, "printer", {"floor": 2}) == [
        ("subcategory", "value_error"),
        ("fields.floor", "extra_forbidden"),
    ]


def test_a_desk_may_require_a_category_of_every_ticket() -> None:
    def required(category: str | None, fields: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            check_new_ticket(CATEGORIES, category, None, fields, category_required=True)
        except RequestValidationError as refused:
            return [(".".join(e["loc"][1:]), e["type"]) for e in refused.errors()]
        return []

    assert required(None, {}) == [("category", "missing")]
    assert required(None, {"x": 1}) == [("category", "missing"), ("fields.x", "extra_forbidden")]
    assert required("network", {}) == []
    # Off by default; with no categories declared there is nothing to require.
    assert IntakeDesk().category_required is False
    assert check_new_ticket((), None, None, {"x": 1}, category_required=True) == {"x": 1}
    assert IntakeDesk.model_validate({"category_required": True}).category_required is True


# --- What a follow-up keeps of an old ticket's classification ------------------------------


def test_a_follow_up_keeps_only_what_the_categories_still_declare() -> None:
    answers: dict[str, Any] = {"asset_tag": "HW-1", "problem": "offline", "floor": 3}
    assert still_declared(CATEGORIES, "hardware", "printer", answers) == (
        "hardware",
        "printer",
        answers,
    )
    # A subcategory gone: its fields go with it, the category's stay.
    assert still_declared(CATEGORIES, "hardware", "scanner", answers) == (
        "hardware",
        None,
        {"asset_tag": "HW-1"},
    )
    # A category gone: nothing of its classification is kept.
    assert still_declared(CATEGORIES, "vpn", "x", {"asset_tag": "HW-1"}) == (None, None, {})
    assert still_declared(CATEGORIES, None, None, {"free": "text"}) == (None, None, {})
    # An answer the field no longer takes is dropped, never refused; a required one missing
    # is not asked for.
    changed: dict[str, Any] = {
        "asset_tag": "TOO-LONG-NOW",
        "problem": "smoke",
        "floor": 3,
        "old": "x",
    }
    assert still_declared(CATEGORIES, "hardware", "printer", changed) == (
        "hardware",
        "printer",
        {"floor": 3},
    )
    # No categories declared: everything is kept as it was.
    assert still_declared((), "vpn", "x", {"free": "text"}) == ("vpn", "x", {"free": "text"})


# --- Re-categorising --------------------------------------------------------------------------


def recategorised(
    sent: dict[str, str | None], current: tuple[str | None, str | None]
) -> tuple[str, str] | None:
    try:
        check_recategorisation(CATEGORIES, sent, *current)
    except RequestValidationError as refused:
        [error] = refused.errors()
        return ".".join(error["loc"][1:]), str(error["msg"])
    return None


def test_re_categorising_asks_for_no_fields_but_a_known_category_and_subcategory() -> None:
    # hardware/printer requires asset_tag and problem: not asked of the agent.
    assert recategorised({"category": "hardware", "subcategory": "printer"}, (None, None)) is None
    assert recategorised({"subcategory": "laptop"}, ("hardware", "printer")) is None
    assert recategorised({"category": None}, ("hardware", None)) is None
    assert recategorised({"category": None, "subcategory": None}, ("hardware", "laptop")) is None

    assert recategorised({"category": "vpn"}, (None, None)) == (
        "category",
        "'vpn' is not a category here; one of 'hardware', 'access', 'network'",
    )
    assert recategorised({"subcategory": "vpn"}, ("hardware", None)) == (
        "subcategory",
        "'vpn' is not a subcategory of 'hardware'; one of 'printer', 'laptop'",
    )
    assert recategorised({"subcategory": "printer"}, (None, None)) == (
        "subcategory",
        "subcategory 'printer' needs a category",
    )


def test_re_categorising_minds_what_the_ticket_keeps() -> None:
    # The ticket keeps its subcategory, which the new category does not have.
    assert recategorised({"category": "access"}, ("hardware", "printer")) == (
        "category",
        "the ticket's subcategory 'printer' is not one of 'access': send a subcategory too, "
        "or null",
    )
    assert recategorised({"category": "access", "subcategory": None}, ("hardware", "x")) is None
    # A category from before the desk declared any: the subcategory needs a category with it.
    assert recategorised({"subcategory": "printer"}, ("vpn", None)) == (
        "subcategory",
        "the ticket's category 'vpn' is not one of the desk's: send a category too",
    )
    # Other changes leave an old category alone.
    check_recategorisation(CATEGORIES, {"impact": "low"}, "vpn", "x")
