"""Notify's secrets at rest: the requester's key stays sealed, the composed mail stays boxed.

Intake seals each access key to notify's public key; notify keeps only that sealed form and
opens it just to compose the acknowledgement. The composed message holds the portal link, so it
is stored boxed under a key derived from notify's private key, and opened by the transport
right before it goes out (UnsealingTransport): a copy of notify's database opens nothing."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from spoc_notify.mail import MailTransport, OutgoingMail
from spoc_platform.sealing import SealingError, SecretKeyBox, open_sealed, recipient_of, seal_for

T = TypeVar("T")

# Marks a boxed message; rows written before boxing (plain RFC 5322 text) never start so.
_BOXED = b"spoc-boxed:1:"


class NotifySecrets:
    """Everything notify does with its private key, in one place.

    Earlier secrets (after a rotation) still open what they sealed; only the current one seals,
    and intake seals to the current one's public key."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._secrets = (secret, *previous)
        self._recipient = recipient_of(secret)
        self._boxes = [SecretKeyBox(s.encode(), b"spoc-notify-mail") for s in self._secrets]

    def seal_access_key(self, access_key: str) -> str:
        """For a v1 ticket.created, whose key arrived in plaintext: keep it as v2 would have."""
        return seal_for(self._recipient, access_key)

    def open_access_key(self, sealed: str) -> str:
        return _first_that_opens([functools.partial(open_sealed, s) for s in self._secrets], sealed)

    def box_message(self, message: str) -> str:
        return _BOXED.decode() + self._boxes[0].seal(message.encode("utf-8"))

    def open_message(self, stored: bytes) -> bytes:
        if not stored.startswith(_BOXED):
            return stored  # written before messages were boxed
        boxed = stored.removeprefix(_BOXED).decode("ascii")
        return _first_that_opens([box.open for box in self._boxes], boxed)


def _first_that_opens(openers: Sequence[Callable[[str], T]], sealed: str) -> T:
    for opener in openers[:-1]:
        try:
            return opener(sealed)
        except SealingError:
            continue
    return openers[-1](sealed)


class UnsealingTransport:
    """Opens a boxed message right before the real transport sends it, so the plaintext (and
    the link in it) exists only for the moment of sending."""

    def __init__(self, inner: MailTransport, secrets: NotifySecrets) -> None:
        self.inner = inner
        self._secrets = secrets

    async def send(self, mail: OutgoingMail) -> None:
        await self.inner.send(replace(mail, raw=self._secrets.open_message(mail.raw)))

    async def close(self) -> None:
        await self.inner.close()
