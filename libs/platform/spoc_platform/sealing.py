"""Secrets that only their reader can open: sealed to a public key, or boxed under a derived key.

A requester's access key is sealed by intake to notify's public key (X25519, libsodium's sealed
box), so the outbox, the broker, other consumers and any dead letter carry only ciphertext, and
only the holder of notify's private key can turn it back into a link. Values are base64 text,
so they fit a JSON payload or a text column as they are."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from nacl.encoding import RawEncoder
from nacl.exceptions import CryptoError
from nacl.hash import blake2b
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox

# A well-known pair for development and tests only: it is printed here, so it protects nothing,
# and production settings refuse it (`spoc keys generate` makes a real one).
DEVELOPMENT_SECRET = "YBPt55vDOZuvl9MSFoebm0EaTtV4wNfZjxqVDSXbVlQ="
DEVELOPMENT_RECIPIENT = "D53pxUhEcpsctvgx1ZlmRfUPycDLnWZpu7EpcTf0enM="


class SealingError(ValueError):
    """A sealed value that this key cannot open: another key sealed it, or it was altered."""


@dataclass(frozen=True)
class KeyPair:
    # The public half, given to whoever seals (intake).
    recipient: str
    # The private half, kept by the only reader (notify).
    secret: str


def _key_bytes(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes (base64), not {len(raw)}")
    return raw


def check_key(value: str, what: str) -> str:
    """`value` if it is a well-formed key; ValueError naming `what` otherwise (for settings)."""
    _key_bytes(value, what)
    return value


def generate_key_pair() -> KeyPair:
    secret = PrivateKey.generate()
    return KeyPair(
        recipient=base64.b64encode(bytes(secret.public_key)).decode(),
        secret=base64.b64encode(bytes(secret)).decode(),
    )


def recipient_of(secret: str) -> str:
    """The public key that belongs to a private key."""
    key = PrivateKey(_key_bytes(secret, "secret key"))
    return base64.b64encode(bytes(key.public_key)).decode()


def seal_for(recipient: str, plaintext: str) -> str:
    """Ciphertext only the holder of `recipient`'s private key can open (anonymous sender)."""
    box = SealedBox(PublicKey(_key_bytes(recipient, "recipient key")))
    return base64.b64encode(box.encrypt(plaintext.encode())).decode()


def open_sealed(secret: str, sealed: str) -> str:
    box = SealedBox(PrivateKey(_key_bytes(secret, "secret key")))
    try:
        return box.decrypt(base64.b64decode(sealed, validate=True)).decode()
    except (CryptoError, binascii.Error, ValueError) as error:
        raise SealingError(f"cannot open a sealed value: {error}") from None


class SecretKeyBox:
    """Authenticated symmetric encryption under a key derived for one purpose.

    The material must be secret and hard to guess (a private key, a random token): the
    derivation is a keyed hash, not a password hash."""

    def __init__(self, material: bytes, purpose: bytes) -> None:
        # BLAKE2b's personalisation keeps keys derived for different purposes apart.
        key = blake2b(
            material, digest_size=SecretBox.KEY_SIZE, person=purpose[:16], encoder=RawEncoder
        )
        self._box = SecretBox(key)

    def seal(self, plaintext: bytes) -> str:
        return base64.b64encode(bytes(self._box.encrypt(plaintext))).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._box.decrypt(base64.b64decode(sealed, validate=True))
        except (CryptoError, binascii.Error, ValueError) as error:
            raise SealingError(f"cannot open a sealed value: {error}") from None


def keyed_digest(material: bytes, purpose: bytes) -> str:
    """A hex digest of `material` for looking it up without storing it (distinct per purpose)."""
    return blake2b(material, digest_size=32, person=purpose[:16]).decode()
