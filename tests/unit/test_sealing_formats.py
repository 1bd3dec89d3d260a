"""Sealed values outlive a release: what an earlier Spoc stored still opens, keys are checked
strictly, and a value that does not open says so instead of yielding garbage."""

from __future__ import annotations

import pytest

from spoc_platform.sealing import (
    DEVELOPMENT_RECIPIENT,
    DEVELOPMENT_SECRET,
    SealingError,
    SecretKeyBox,
    check_key,
    generate_key_pair,
    keyed_digest,
    open_sealed,
    recipient_of,
    seal_for,
)

pytestmark = pytest.mark.unit

# Made by this release and kept as they are: a database or a broker still holds values like
# these after an upgrade, so the derivations behind them must never change.
IDEMPOTENCY_KEY = b"form-1f6a0c2e"
LOOKUP_DIGEST = "069b3de94359b49fa7e85b0d65b074e903c5b2dec488dadaa9f7faf9859ddf24"
BOXED_ANSWER = (
    "faFaUknOiYkgPp4PVk6X5aBoH1MlwW8LV3/FIpIBTW5C/2TD/e4nyZdCNHTWaf9oYs+FBDtXIXzzawTho/aw"
)
SEALED_ACCESS_KEY = (
    "WJhPFjrDX2HH28skU2i7Ysd5aVYRkduDb4CiWg2Fwmgzjxtu3PYJQnPjXLxjaqqaz/4NxmZI35B/01UwZTA="
)


def test_values_stored_by_an_earlier_release_still_open_and_are_still_found() -> None:
    assert keyed_digest(IDEMPOTENCY_KEY, b"spoc-idem-lookup") == LOOKUP_DIGEST
    box = SecretKeyBox(IDEMPOTENCY_KEY, b"spoc-idem-answer")
    assert box.open(BOXED_ANSWER) == b'{"number": "SD-000007"}'
    assert open_sealed(DEVELOPMENT_SECRET, SEALED_ACCESS_KEY) == "secret-key-123"


def test_keys_derived_for_different_purposes_open_nothing_of_each_other() -> None:
    answers = SecretKeyBox(IDEMPOTENCY_KEY, b"spoc-idem-answer")
    mails = SecretKeyBox(IDEMPOTENCY_KEY, b"spoc-notify-mail")
    with pytest.raises(SealingError, match=r"^cannot open a sealed value: "):
        mails.open(answers.seal(b"for answers only"))
    assert keyed_digest(IDEMPOTENCY_KEY, b"spoc-idem-lookup") != keyed_digest(
        IDEMPOTENCY_KEY, b"spoc-other-looku"
    )


def test_a_purpose_longer_than_sixteen_bytes_still_derives_a_key() -> None:
    box = SecretKeyBox(IDEMPOTENCY_KEY, b"spoc-a-long-purpose-label")
    assert box.open(box.seal(b"kept")) == b"kept"
    assert len(keyed_digest(IDEMPOTENCY_KEY, b"spoc-a-long-purpose-label")) == 64


def test_a_generated_pair_belongs_together_and_the_development_pair_does_too() -> None:
    pair = generate_key_pair()
    assert recipient_of(pair.secret) == pair.recipient
    assert check_key(pair.recipient, "recipient") == pair.recipient
    assert open_sealed(pair.secret, seal_for(pair.recipient, "a key")) == "a key"
    assert recipient_of(DEVELOPMENT_SECRET) == DEVELOPMENT_RECIPIENT


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        # A stray character is not skipped: a key pasted with junk in it is refused.
        (DEVELOPMENT_RECIPIENT[:10] + "!" + DEVELOPMENT_RECIPIENT[10:], "is not base64"),
        ("not a key", "is not base64"),
        ("c2hvcnQ=", "must be 32 bytes (base64), not 5"),
        ("A" * 44 + "AAAA", "must be 32 bytes (base64), not 36"),
    ],
)
def test_a_malformed_key_is_refused_naming_the_setting(value: str, complaint: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_key(value, "SPOC_INTAKE_ACCESS_KEY_RECIPIENT")
    assert str(refused.value) == f"SPOC_INTAKE_ACCESS_KEY_RECIPIENT {complaint}"


def test_each_use_of_a_malformed_key_names_which_key_it_is() -> None:
    with pytest.raises(ValueError, match=r"^secret key is not base64$"):
        recipient_of("not a key")
    with pytest.raises(ValueError, match=r"^secret key must be 32 bytes"):
        open_sealed("c2hvcnQ=", SEALED_ACCESS_KEY)
    with pytest.raises(ValueError, match=r"^recipient key is not base64$"):
        seal_for("not a key", "a key")


@pytest.mark.parametrize(
    "altered",
    [
        SEALED_ACCESS_KEY[:20] + "!" + SEALED_ACCESS_KEY[20:],
        SEALED_ACCESS_KEY[:20]
        + ("B" if SEALED_ACCESS_KEY[20] != "B" else "C")
        + SEALED_ACCESS_KEY[21:],
        "not sealed at all",
    ],
    ids=["stray-character", "flipped-character", "garbage"],
)
def test_a_sealed_value_that_was_altered_does_not_open(altered: str) -> None:
    with pytest.raises(SealingError, match=r"^cannot open a sealed value: "):
        open_sealed(DEVELOPMENT_SECRET, altered)


def test_a_boxed_value_with_a_stray_character_does_not_open() -> None:
    box = SecretKeyBox(IDEMPOTENCY_KEY, b"spoc-idem-answer")
    with pytest.raises(SealingError, match=r"^cannot open a sealed value: "):
        box.open(BOXED_ANSWER[:20] + "!" + BOXED_ANSWER[20:])
