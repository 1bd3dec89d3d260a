"""Who is calling: the one description of a caller that every route and use case decides on.

Credentials (session cookies, bearer tokens, requester sign-in sessions, access keys) are
resolved to a `Caller` once per request by `api.deps.current_caller`; nothing past that point
looks at a header or a cookie again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["requester", "agent", "manager", "admin", "integration"]
ROLES: tuple[Role, ...] = ("requester", "agent", "manager", "admin", "integration")
# People who work tickets; an integration files and reads tickets but is nobody's colleague.
STAFF_ROLES: frozenset[Role] = frozenset({"agent", "manager", "admin"})


@dataclass(frozen=True)
class Caller:
    """An authenticated or anonymous caller.

    `role` is None for an anonymous caller (who may still hold a ticket's access key, checked
    per ticket). `credential_id` names the credential used (a token's or a session's id): an
    Idempotency-Key is scoped to it, so one caller can neither replay nor squat another's key."""

    role: Role | None
    # The staff account's id, or the integration token's id; the requester's address for a
    # signed-in requester.
    subject_id: str | None = None
    name: str | None = None
    email: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    credential_id: str | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.role is None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def sees_every_group(self) -> bool:
        """Managers and admins see every ticket; agents only their groups' (unless a setting
        lets every agent see all, which the caller of this property decides)."""
        return self.role in {"manager", "admin"}


ANONYMOUS = Caller(role=None)
