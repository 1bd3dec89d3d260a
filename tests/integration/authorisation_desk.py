"""The desk the authorisation matrix runs against: intake on a real database, six tickets
placed where the visibility rules differ, and one real credential per role.

Every credential is made the way its holder gets it: staff sign in with a password (a session
cookie) or hold a `spoc_` bearer token, a requester signs in by the mailed link, a key holder
has the access key from the create answer. No dependency override decides who is calling."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
from fastapi import FastAPI

from spoc_contracts import RequesterSignInRequested, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake.app import create_app
from spoc_intake.callers import Role
from spoc_intake.requester_links import REQUESTER_SESSION_COOKIE
from spoc_intake.staff import StaffCreate
from spoc_intake.staff_sign_in import SAFE_METHODS, SESSION_COOKIE
from spoc_intake.tokens import create_token
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.harness import ServiceUnderTest, envelope, service

BASE_URL = "http://intake"
SAME_SITE = {"Origin": BASE_URL}
PASSWORD = "matrix horse battery staple"
CHEAP_HASHING = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}
# Configured so that the operators' routes (/admin, a guarded /metrics) exist and are covered.
OPS_TOKENS = {"admin_token": secrets.token_urlsafe(32), "metrics_token": secrets.token_urlsafe(32)}
CATEGORY = "printing"

# The callers, as the matrix names them.
ANONYMOUS = "anonymous"
REQUESTER = "requester"  # signed in by the mailed link; the desk ticket is theirs
KEY_HOLDER = "key holder"  # no sign-in, the desk ticket's access key
AGENT = "agent"  # service-desk, password session
OTHER_AGENT = "agent of another group"  # network, bearer token of their account
MANAGER = "manager"  # password session
ADMIN = "admin"  # bearer token of their account
INTEGRATION = "integration"  # bearer token
ROLES = (ANONYMOUS, REQUESTER, KEY_HOLDER, AGENT, OTHER_AGENT, MANAGER, ADMIN, INTEGRATION)

# The tickets: where the visibility rules part ways.
DESK = "desk"  # the requester's, routed to service-desk
NETWORK = "network"  # someone else's, routed to network, owned by a network agent
UNROUTED = "unrouted"  # someone else's, routing has not placed it yet
ESCALATED = "escalated"  # someone else's, in network's hands but still owned by the agent
# Closed, where a requester's reply opens a follow-up ticket (and staff's is a 409).
CLOSED = "closed"  # the requester's, closed (and rated) in service-desk
OTHERS_CLOSED = "someone's closed"  # someone else's, closed in service-desk
MISSING = "missing"  # no such ticket
TICKETS = (DESK, NETWORK, UNROUTED, ESCALATED, CLOSED, OTHERS_CLOSED, MISSING)
CLOSED_TICKETS = frozenset({CLOSED, OTHERS_CLOSED})
MISSING_NUMBER = "SD-999999"

SERVICE_DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
NETWORK_GROUP = GroupRef(id="network", name="Network Operations", tier=2)
# Spare staff account the /api/v1/staff/{staff_id} routes aim at: changing it harms no one.
SPARE_STAFF = "zed"


@dataclass(frozen=True)
class Ticket:
    label: str
    number: str
    id: str
    subject: str
    description: str
    requester_name: str
    requester_email: str
    access_key: str

    def secrets(self) -> dict[str, str]:
        """What no answer to a caller who may not see this ticket may contain."""
        return {
            "number": self.number,
            "id": self.id,
            "subject": self.subject,
            "description": self.description,
            "requester name": self.requester_name,
            "requester email": self.requester_email,
            "access key": self.access_key,
        }


@dataclass(frozen=True)
class Credential:
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def headers_for(self, method: str) -> dict[str, str]:
        """The headers a request carries; a cookie session's unsafe request also carries the
        Origin a browser sends from the desk's own page."""
        sent = dict(self.headers)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            if method.upper() not in SAFE_METHODS:
                sent.update(SAME_SITE)
        return sent


class _NoCookies(CookieJar):
    """Keeps no cookies: each request carries exactly the credential the test gives it."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


@dataclass
class Desk:
    """Intake, an HTTP client on it, the cast's tickets by label and credentials by role."""

    intake: ServiceUnderTest
    app: FastAPI
    http: httpx.AsyncClient
    tickets: dict[str, Ticket] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    # The follow-up tickets the requester's replies to their closed ticket opened: theirs too.
    follow_ups: set[str] = field(default_factory=set)

    def number(self, label: str) -> str:
        return MISSING_NUMBER if label == MISSING else self.tickets[label].number

    def credential_for(self, role: str, label: str) -> Credential:
        """`role`'s credential for the ticket `label`: the key holder holds the key of each of
        the requester's tickets (each came by mail), and the desk ticket's for any other."""
        own = self.tickets.get(label)
        if role == KEY_HOLDER and own and own.requester_email == self.tickets[DESK].requester_email:
            return Credential(headers={"X-Access-Key": own.access_key})
        return self.credentials[role]

    async def call(
        self,
        role: str,
        method: str,
        path: str,
        *,
        credential: Credential | None = None,
        headers: dict[str, str] | None = None,
        **request: Any,
    ) -> httpx.Response:
        sent = (credential or self.credentials[role]).headers_for(method)
        sent.update(headers or {})
        return await self.http.request(method, path, headers=sent, **request)

    async def fresh(self, role: str) -> Credential:
        """A new credential of `role`, for a route that ends the one it is called with."""
        if role in (AGENT, MANAGER):
            return await self._staff_session(_STAFF_OF[role])
        if role == REQUESTER:
            return await self.requester_session(self.tickets[DESK].requester_email)
        if role in (OTHER_AGENT, ADMIN, INTEGRATION):
            return await self._token(role)
        return self.credentials[role]

    async def _staff_session(self, staff_id: str) -> Credential:
        answer = await self.http.post(
            "/api/v1/session", json={"email": f"{staff_id}@example.org", "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return Credential(cookies={SESSION_COOKIE: answer.cookies[SESSION_COOKIE]})

    async def requester_session(self, email: str) -> Credential:
        asked = await self.http.post("/api/v1/requester/links", json={"email": email})
        assert asked.status_code == 202, asked.text
        # The link's token, opened from the sealed event as notify would before mailing it.
        event = (await self.intake.published(RequesterSignInRequested.TYPE))[-1]
        requested = RequesterSignInRequested.model_validate(event.data)
        assert requested.email == email
        token = open_sealed(DEVELOPMENT_SECRET, requested.link_token_sealed)
        used = await self.http.post("/requester/sign-in", data={"token": token}, headers=SAME_SITE)
        assert used.status_code == 303, used.text
        return Credential(
            cookies={REQUESTER_SESSION_COOKIE: used.cookies[REQUESTER_SESSION_COOKIE]}
        )

    async def _token(self, role: str) -> Credential:
        unit_of_work = self.intake.runtime.unit_of_work
        if role == INTEGRATION:
            issued = await create_token(unit_of_work, role="integration", name="monitoring")
        else:
            staff_id = _STAFF_OF[role]
            issued = await create_token(
                unit_of_work, role=_ROLE_OF[staff_id], name=f"{staff_id}'s", subject_id=staff_id
            )
        return Credential(headers={"Authorization": f"Bearer {issued.token}"})

    async def open_ticket(
        self,
        label: str,
        requester: str,
        *,
        group: GroupRef | None = None,
        owner: AgentRef | None = None,
    ) -> Ticket:
        """A ticket with strings of its own (so a leak is found by searching for them),
        routed as routing would route it."""
        mark = secrets.token_hex(4)
        subject = f"Subject of the {label} ticket {mark}"
        description = f"Description of the {label} ticket {mark}"
        name, email = f"{requester.title()} {mark}", f"{requester}@example.org"
        body = {
            "subject": subject,
            "description": description,
            "type": "incident",
            "impact": "medium",
            "urgency": "medium",
            "category": CATEGORY,
            "requester": {"name": name, "email": email},
        }
        created = await self.http.post("/api/v1/tickets", json=body)
        assert created.status_code == 201, created.text
        answer = created.json()
        if group is not None:
            await self.route(answer, group, owner)
        return Ticket(
            label=label,
            number=answer["number"],
            id=answer["id"],
            subject=subject,
            description=description,
            requester_name=name,
            requester_email=email,
            access_key=answer["access_key"],
        )

    async def route(
        self, ticket: dict[str, Any], group: GroupRef, owner: AgentRef | None = None
    ) -> None:
        """Places a ticket (a create answer) as routing would."""
        routed = TicketRouted(
            number=ticket["number"],
            priority="P3",
            impact="medium",
            urgency="medium",
            group=group,
            owner=owner,
            reason="matrix",
        )
        await self.intake.deliver(
            envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
        )

    async def closed_ticket(self, label: str, requester: str, *, rated: bool = False) -> Ticket:
        """A ticket of service-desk's, resolved by its agent and closed; `rated`: its
        requester rated it first (so a rating from the table is the same 409 in any order)."""
        ticket = await self.open_ticket(label, requester, group=SERVICE_DESK)
        path = f"/api/v1/tickets/{ticket.number}"
        for to in ("resolved", "closed"):
            moved = await self.call(AGENT, "POST", f"{path}/status", json={"to": to})
            assert moved.status_code == 200, moved.text
            if to == "resolved" and rated:
                key = Credential(headers={"X-Access-Key": ticket.access_key})
                rating = await self.call(
                    KEY_HOLDER, "POST", f"{path}/feedback", credential=key, json={"rating": 4}
                )
                assert rating.status_code == 201, rating.text
        return ticket


_ROLE_OF: dict[str, Role] = {"sara": "agent", "piotr": "agent", "mina": "manager", "ada": "admin"}
_STAFF_OF = {AGENT: "sara", OTHER_AGENT: "piotr", MANAGER: "mina", ADMIN: "ada"}
_GROUPS_OF = {"sara": ["service-desk"], "piotr": ["network"], "mina": [], "ada": []}


@asynccontextmanager
async def desk_on(database_url: str) -> AsyncIterator[Desk]:
    """The whole cast on a fresh intake: staff, tickets and one credential per role."""
    async with service("intake", database_url, **CHEAP_HASHING, **OPS_TOKENS) as intake:
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, cookies=_NoCookies()
        ) as http:
            desk = Desk(intake, app, http)
            for staff_id, role in {**_ROLE_OF, SPARE_STAFF: "agent"}.items():
                await intake.container.staff.create(
                    StaffCreate(
                        id=staff_id,
                        name=f"{staff_id.title()} Staff",
                        email=f"{staff_id}@example.org",
                        role=role,
                        groups=_GROUPS_OF.get(staff_id, ["service-desk"]),
                        password=PASSWORD,
                    )
                )
            sara = AgentRef(id="sara", name="Sara Staff")
            piotr = AgentRef(id="piotr", name="Piotr Staff")
            desk.tickets = {
                DESK: await desk.open_ticket(DESK, "reza", group=SERVICE_DESK),
                NETWORK: await desk.open_ticket(NETWORK, "olga", group=NETWORK_GROUP, owner=piotr),
                UNROUTED: await desk.open_ticket(UNROUTED, "nasrin"),
                # Escalated to network, the agent stays the requester's one contact (D3).
                ESCALATED: await desk.open_ticket(
                    ESCALATED, "tomas", group=NETWORK_GROUP, owner=sara
                ),
            }
            desk.credentials = {
                ANONYMOUS: Credential(),
                KEY_HOLDER: Credential(headers={"X-Access-Key": desk.tickets[DESK].access_key}),
            }
            for signed_in in (REQUESTER, AGENT, OTHER_AGENT, MANAGER, ADMIN, INTEGRATION):
                desk.credentials[signed_in] = await desk.fresh(signed_in)
            desk.tickets[CLOSED] = await desk.closed_ticket(CLOSED, "reza", rated=True)
            desk.tickets[OTHERS_CLOSED] = await desk.closed_ticket(OTHERS_CLOSED, "yusuf")
            yield desk
