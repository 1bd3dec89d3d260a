"""Tracking numbers as people write them: forgiving of case and spaces, strict about digits."""

from __future__ import annotations

import pytest

from spoc_intake.tracking import format_number, parse_number


@pytest.mark.parametrize(
    ("written", "sequence"),
    [("SD-000002", 2), ("sd-2", 2), (" SD000123 ", 123), ("SD-999999999999", 999_999_999_999)],
)
def test_a_number_is_read_whatever_its_case_spaces_and_padding(written: str, sequence: int) -> None:
    assert parse_number("SD", written) == sequence


@pytest.mark.parametrize(
    "written",
    [
        "SD-\u0662",  # ARABIC-INDIC DIGIT TWO
        "SD-00000\u0662",
        "SD-\u0968",  # DEVANAGARI DIGIT TWO
        "SD-\uff12",  # FULLWIDTH DIGIT TWO
        "\u017fD-000002",  # LATIN SMALL LETTER LONG S, which Unicode case folding reads as s
        "SD-\u00b2",  # SUPERSCRIPT TWO
        "SD-2\u3000",  # an ideographic space around it is not forgiven
        "SD-",
        "SD-1234567890123",
        "XY-000002",
    ],
)
def test_anything_but_ascii_digits_after_the_prefix_is_no_number(written: str) -> None:
    assert parse_number("SD", written) is None


def test_every_number_written_reads_back() -> None:
    for sequence in (1, 42, 999_999, 1_000_000):
        assert parse_number("SD", format_number("SD", sequence)) == sequence
