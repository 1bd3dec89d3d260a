"""Who may do what on intake's HTTP API, as one table: every route × every caller × their own
ticket, someone else's and a missing one → the answer, with real credentials throughout.

The rules the table holds (README, "Working a ticket"):
- a ticket the caller may not see answers exactly as a missing one: the same 404, the same
  body but for the number they asked about, on every route. That holds on the agent-only
  routes of a ticket too: an anonymous caller or a stranger gets the 404, a requester on their
  own ticket the 403; the account routes (/api/v1/staff) answer 401 or 403;
- agents see their groups' tickets, the unrouted ones and the ones they own; managers and
  admins see all; a requester sees their own (signed in, or with the ticket's access key);
- an integration lists and reads every ticket but may not reply, move, re-classify, escalate
  or rate one (403: a decision, it is nobody's colleague);
- a requester only confirms or reopens a resolution, and has an input model of their own:
  `visibility`, `priority` or `owner` from them is a 422;
- no answer to a caller who may not see a ticket holds its number (unless they sent it),
  id, subject, description, requester's name or address, and no answer holds an access key;
- a key carried by the portal's cookie, like a session, moves nothing from another site's page.

A route the app serves but the table does not name fails `test_every_route_is_in_the_table`:
a new route is added to the table, with its answer for every caller, before it ships."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from spoc_intake.api.deps import access_cookie_name
from spoc_intake.workflow import STATUSES
from tests.integration.authorisation_desk import (
    ADMIN,
    AGENT,
    ANONYMOUS,
    CATEGORY,
    CLOSED,
    CLOSED_TICKETS,
    DESK,
    ESCALATED,
    INTEGRATION,
    KEY_HOLDER,
    MANAGER,
    MISSING,
    MISSING_NUMBER,
    NETWORK,
    OTHER_AGENT,
    OTHERS_CLOSED,
    REQUESTER,
    ROLES,
    SAME_SITE,
    SERVICE_DESK,
    SPARE_STAFF,
    TICKETS,
    UNROUTED,
    Credential,
    Desk,
    desk_on,
)
from tests.support import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    # One desk for the whole table: building the cast costs far more than asking it.
    path: Path = tmp_path_factory.mktemp("matrix") / "intake.sqlite3"
    async with desk_on(f"sqlite+aiosqlite:///{path}") as built:
        yield built


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def postgres_desk() -> AsyncIterator[Desk]:
    """The same desk on PostgreSQL, for the lists: their visibility rule is SQL (the read's is
    Python), and the two must agree on both databases."""
    url = await create_postgres_database("spoc_test")
    try:
        async with desk_on(url) as built:
            yield built
    finally:
        await drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def either_desk(request: pytest.FixtureRequest) -> Desk:
    built: Desk = request.getfixturevalue("desk" if request.param == "sqlite" else "postgres_desk")
    return built


# --- Who sees which ticket -------------------------------------------------------------------

# How a caller sees a ticket: with the agent's view and rights (STAFF), the requester's (REQ),
# an integration's read-only public view (INT), or not at all (None: a missing ticket's 404).
STAFF, REQ, INT = "staff", "requester", "integration"
Audience = str | None


def _row(
    desk: Audience,
    network: Audience,
    unrouted: Audience,
    escalated: Audience,
    closed: Audience,
    others_closed: Audience,
) -> dict[str, Audience]:
    return {
        DESK: desk,
        NETWORK: network,
        UNROUTED: unrouted,
        ESCALATED: escalated,
        CLOSED: closed,
        OTHERS_CLOSED: others_closed,
        MISSING: None,
    }


# fmt: off
SEES: dict[str, dict[str, Audience]] = {
    # the columns: desk, network, unrouted, escalated, closed (the requester's), someone's
    # closed (a missing ticket: nobody sees it)
    ANONYMOUS:   _row(None,  None,  None,  None,  None,  None),
    REQUESTER:   _row(REQ,   None,  None,  None,  REQ,   None),
    KEY_HOLDER:  _row(REQ,   None,  None,  None,  REQ,   None),
    # escalated: network's, but still theirs
    AGENT:       _row(STAFF, None,  STAFF, STAFF, STAFF, STAFF),
    OTHER_AGENT: _row(None,  STAFF, STAFF, STAFF, None,  None),
    MANAGER:     _row(STAFF, STAFF, STAFF, STAFF, STAFF, STAFF),
    ADMIN:       _row(STAFF, STAFF, STAFF, STAFF, STAFF, STAFF),
    INTEGRATION: _row(INT,   INT,   INT,   INT,   INT,   INT),
}
# fmt: on


# --- The routes of one ticket ------------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """What a route answers staff, the ticket's requester and an integration."""

    staff: int
    requester: int
    integration: int
    # The error code of each refusal (a 404 is always `ticket_not_found`).
    codes: dict[int, str] = field(default_factory=lambda: {403: "forbidden"})


@dataclass(frozen=True)
class TicketRoute:
    """What a route of one ticket answers, by how the caller sees that ticket: an open one,
    and (`closed`) a closed one, where a requester's reply opens a follow-up ticket."""

    staff: int
    requester: int
    integration: int
    closed: Answers
    json: dict[str, Any] | None = None
    # The error code of each refusal the route gives (a 404 is always `ticket_not_found`).
    codes: dict[int, str] = field(default_factory=lambda: {403: "forbidden"})
    html: bool = False

    def status(self, seen_as: Audience, ticket: str) -> int:
        if seen_as is None:
            return 404
        answers = self.closed if ticket in CLOSED_TICKETS else self
        return {STAFF: answers.staff, REQ: answers.requester, INT: answers.integration}[seen_as]

    def code(self, status: int, ticket: str) -> str:
        return (self.closed.codes if ticket in CLOSED_TICKETS else self.codes)[status]


TICKET_ROUTES: dict[tuple[str, str], TicketRoute] = {
    ("GET", "/api/v1/tickets/{number}"): TicketRoute(
        staff=200, requester=200, integration=200, closed=Answers(200, 200, 200)
    ),
    # The category it has already: past the door nothing changes, so the cells of the table
    # may run in any order.
    ("PATCH", "/api/v1/tickets/{number}"): TicketRoute(
        staff=200,
        requester=403,
        integration=403,
        closed=Answers(409, 403, 403, codes={403: "forbidden", 409: "ticket_closed"}),
        json={"category": CATEGORY},
    ),
    # On a closed ticket the requester's reply opens a follow-up ticket (201, a new one each
    # time: nothing of the cast changes); staff's is refused.
    ("POST", "/api/v1/tickets/{number}/comments"): TicketRoute(
        staff=201,
        requester=201,
        integration=403,
        closed=Answers(409, 201, 403, codes={403: "forbidden", 409: "ticket_closed"}),
        json={"body": "A reply from the matrix."},
    ),
    # A move nobody may make from `new` or `open`: a 409 proves the caller got past the door,
    # and leaves the ticket as it was.
    ("POST", "/api/v1/tickets/{number}/status"): TicketRoute(
        staff=409,
        requester=409,
        integration=403,
        closed=Answers(409, 409, 403, codes={403: "forbidden", 409: "transition_not_allowed"}),
        json={"to": "closed"},
        codes={403: "forbidden", 409: "transition_not_allowed"},
    ),
    ("POST", "/api/v1/tickets/{number}/escalations"): TicketRoute(
        staff=202,
        requester=403,
        integration=403,
        closed=Answers(409, 403, 403, codes={403: "forbidden", 409: "ticket_not_active"}),
        json={"to_group": "network", "reason": "The matrix asks for help."},
    ),
    ("POST", "/api/v1/tickets/{number}/hand-back"): TicketRoute(
        staff=202,
        requester=403,
        integration=403,
        closed=Answers(409, 403, 403, codes={403: "forbidden", 409: "ticket_not_active"}),
        json={"reason": "Done here: back to the owner."},
    ),
    ("POST", "/api/v1/tickets/{number}/assignments"): TicketRoute(
        staff=202,
        requester=403,
        integration=403,
        closed=Answers(409, 403, 403, codes={403: "forbidden", 409: "ticket_not_active"}),
        json={"agent": "lena", "reason": "Lena knows this."},
    ),
    # Not resolved yet (closed: rated already): a requester reaches the 409, nobody else gets
    # past the 403.
    ("POST", "/api/v1/tickets/{number}/feedback"): TicketRoute(
        staff=403,
        requester=409,
        integration=403,
        closed=Answers(403, 409, 403, codes={403: "forbidden", 409: "feedback_given"}),
        json={"rating": 5},
        codes={403: "forbidden", 409: "not_resolved"},
    ),
    # The requester's page: their key or their session, nobody else (staff use the API).
    ("GET", "/t/{number}"): TicketRoute(
        staff=404, requester=200, integration=404, closed=Answers(404, 200, 404), html=True
    ),
}


# --- Every other route ---------------------------------------------------------------------------


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def signed_in(status: int) -> dict[str, int]:
    """`status` for every caller with a credential; 401 for one without (a key is no sign-in)."""
    return {**everyone(status), ANONYMOUS: 401, KEY_HOLDER: 401}


def admin_only(status: int) -> dict[str, int]:
    return {**everyone(403), ANONYMOUS: 401, KEY_HOLDER: 401, ADMIN: status}


def managers_only(status: int) -> dict[str, int]:
    """`status` for managers and admins, 403 for other callers signed in, 401 for the rest."""
    return {**admin_only(status), MANAGER: status}


def admin_by_token(status: int) -> dict[str, int]:
    """`status` for the admin's bearer token, 403 for other bearer tokens, 401 for the rest."""
    return {**everyone(401), OTHER_AGENT: 403, INTEGRATION: 403, ADMIN: status}


def _new_staff(role: str) -> dict[str, Any]:
    slug = re.sub(r"[^a-z]+", "-", role)
    email = f"new-{slug}@example.org"
    return {"id": f"new-{slug}", "name": "New Colleague", "email": email, "role": "agent"}


NEWCOMER = "newcomer@example.org"
NEW_TICKET = {
    "subject": "Opened by the matrix",
    "description": "A ticket of someone none of the cast is.",
    "type": "request",
    "requester": {"name": "Newcomer", "email": NEWCOMER},
}


@dataclass(frozen=True)
class Call:
    """How the table asks a route that is not about one ticket, and its answer per caller."""

    answers: dict[str, int]
    path: str | None = None  # the path asked, when the route's has a parameter
    method: str | None = None  # for a mount: the method its files are read with
    json: Any = None
    body_for: Callable[[str], Any] | None = None  # a body of its own for each caller
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Ends the credential it is called with (sign-out): asked with a fresh one of the role.
    ends_credential: bool = False


ROUTES: dict[tuple[str, str], Call] = {
    ("POST", "/api/v1/tickets"): Call(everyone(201), json=NEW_TICKET),
    ("GET", "/api/v1/tickets"): Call(signed_in(200), params={"limit": "100"}),
    # Sign-in takes no caller: a wrong one is the same 401 for all.
    ("POST", "/api/v1/session"): Call(
        everyone(401), json={"email": "nobody@example.org", "password": "not the password"}
    ),
    ("DELETE", "/api/v1/session"): Call(everyone(204), ends_credential=True),
    ("GET", "/api/v1/me"): Call(signed_in(200)),
    ("GET", "/api/v1/staff"): Call(admin_only(200)),
    ("POST", "/api/v1/staff"): Call(admin_only(201), body_for=_new_staff),
    ("PATCH", "/api/v1/staff/{staff_id}"): Call(
        admin_only(200), path=f"/api/v1/staff/{SPARE_STAFF}", json={"name": "Zed Staff"}
    ),
    ("PUT", "/api/v1/staff/{staff_id}/password"): Call(
        admin_only(204),
        path=f"/api/v1/staff/{SPARE_STAFF}/password",
        json={"password": "Zed's next passphrase, long enough 93"},
    ),
    # The agent's own account: she and an admin may set it, nobody else. The value it has
    # already, so the cells change nothing and may run in any order.
    ("PUT", "/api/v1/staff/{staff_id}/availability"): Call(
        {**admin_only(200), AGENT: 200},
        path="/api/v1/staff/sara/availability",
        json={"availability": "available"},
    ),
    ("POST", "/api/v1/requester/links"): Call(everyone(202), json={"email": NEWCOMER}),
    ("DELETE", "/api/v1/requester/session"): Call(everyone(204), ends_credential=True),
    ("GET", "/requester/sign-in"): Call(everyone(200), params={"token": "from-a-mail"}),
    ("POST", "/requester/sign-in"): Call(
        everyone(400), data={"token": "not-a-token"}, headers=SAME_SITE
    ),
    # Everyone gets the page: their requests when signed in, else the form for a link.
    ("GET", "/my"): Call(everyone(200)),
    ("POST", "/my"): Call(everyone(200), data={"email": NEWCOMER}),
    ("POST", "/my/sign-out"): Call(everyone(303), headers=SAME_SITE, ends_credential=True),
    ("GET", "/api/v1/categories"): Call(everyone(200)),
    # Counts over every ticket: the desk's managers' view (an agent, a requester or an
    # integration is refused whatever tickets they may read one by one).
    ("GET", "/api/v1/reports/tickets"): Call(managers_only(200), params={"by": "category,group"}),
    # Operations: open probes, the rest behind the operators' tokens, which no role holds.
    ("GET", "/healthz"): Call(everyone(200)),
    ("GET", "/readyz"): Call(everyone(200)),
    ("GET", "/metrics"): Call(everyone(401)),
    ("GET", "/openapi.json"): Call(everyone(200)),
    ("GET", "/docs"): Call(everyone(200)),
    ("GET", "/redoc"): Call(everyone(200)),
    ("MOUNT", "/docs/assets"): Call(everyone(200), method="GET", path="/docs/assets/favicon.png"),
    # The configured operators' token, or an admin's own `spoc_` bearer token (intake asks its
    # own table, routing and sla their projection of it). Another role's token is a 403; a
    # session cookie is no credential here (401): the admin API is for scripts.
    ("GET", "/admin/dead-letters"): Call(admin_by_token(200)),
    ("POST", "/admin/dead-letters/replay"): Call(admin_by_token(200)),
    ("POST", "/admin/dead-letters/purge"): Call(admin_by_token(200), json={"all": True}),
    ("GET", "/admin/dead-letters/{message_id}"): Call(
        admin_by_token(404), path="/admin/dead-letters/some-id"
    ),
}


# --- What every answer must not hold -----------------------------------------------------------


def leaks(desk: Desk, role: str, answer: httpx.Response, asked_for: str | None = None) -> list[str]:
    """What of the tickets `role` may not see shows in `answer` (body and headers), and any
    access key at all. The number of the ticket asked about may come back: the caller sent it."""
    text = answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    found = []
    for ticket in desk.tickets.values():
        hidden = SEES[role][ticket.label] is None
        for name, value in ticket.secrets().items():
            if name == "access key" or (hidden and name != "number"):
                if value in text:
                    found.append(f"{ticket.label}'s {name}")
            elif hidden and ticket.label != asked_for and re.search(rf"{value}(?!\d)", text):
                found.append(f"{ticket.label}'s number")
    return found


def error_code(answer: httpx.Response) -> str:
    code: str = answer.json()["error"]["code"]
    return code


# --- The table, asked ---------------------------------------------------------------------------


async def test_every_route_is_in_the_table(desk: Desk) -> None:
    served = served_routes(desk.app)
    tabled = set(TICKET_ROUTES) | set(ROUTES)
    assert served - tabled == set(), "routes without a row: add them to TICKET_ROUTES or ROUTES"
    assert tabled - served == set(), "rows for routes the app no longer serves"
    # The enumeration sees what the API document says (and the pages it leaves out).
    documented = {
        (method.upper(), path)
        for path, operations in desk.app.openapi()["paths"].items()
        for method in operations
    }
    assert documented <= served


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers; ("MOUNT", path) for a mounted app.

    FastAPI 0.16x nests included routers; `iter_route_contexts` flattens them (older
    versions keep `app.routes` flat). HEAD comes with every GET and is not a route of its own."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten else list(app.routes)
    served: set[tuple[str, str]] = set()
    for route in routes:
        path: str = getattr(route, "path", "")
        methods: set[str] | None = getattr(route, "methods", None)
        if not methods:
            served.add(("MOUNT", path))
            continue
        served |= {(m, path) for m in methods if not (m == "HEAD" and "GET" in methods)}
    return served


TICKET_CELLS = [
    pytest.param(route, role, ticket, id=f"{route[0]} {route[1]} | {role} | {ticket}")
    for route in TICKET_ROUTES
    for role in ROLES
    for ticket in TICKETS
]


async def ask_ticket_route(
    desk: Desk, role: str, route: tuple[str, str], ticket: str
) -> httpx.Response:
    method, template = route
    path = template.format(number=desk.number(ticket))
    credential = desk.credential_for(role, ticket)
    answer = await desk.call(
        role, method, path, credential=credential, json=TICKET_ROUTES[route].json
    )
    if answer.status_code == 201 and "follows_up" in answer.json():
        # Routed where the closed ticket was: its subject ("Re: …") is seen where that one is.
        desk.follow_ups.add(answer.json()["number"])
        await desk.route(answer.json(), SERVICE_DESK)
    return answer


def _same_as_missing(answer: httpx.Response, number: str) -> str:
    return answer.text.replace(number, "{number}")


@pytest.mark.parametrize(("route", "role", "ticket"), TICKET_CELLS)
async def test_a_ticket_route_answers_each_caller_as_the_table_says(
    desk: Desk, route: tuple[str, str], role: str, ticket: str
) -> None:
    spec = TICKET_ROUTES[route]
    seen_as = SEES[role][ticket]
    expected = spec.status(seen_as, ticket)

    answer = await ask_ticket_route(desk, role, route, ticket)

    assert answer.status_code == expected, answer.text
    if expected == 404:
        # Not theirs answers as missing does, to the byte but for the number they sent.
        missing = await ask_ticket_route(desk, role, route, MISSING)
        assert missing.status_code == 404
        assert _same_as_missing(answer, desk.number(ticket)) == _same_as_missing(
            missing, MISSING_NUMBER
        )
        assert sorted(answer.headers.items()) == sorted(missing.headers.items())
        if not spec.html:
            assert error_code(answer) == "ticket_not_found"
    elif expected >= 400:
        assert error_code(answer) == spec.code(expected, ticket)
    assert leaks(desk, role, answer, asked_for=ticket) == []
    if route == ("POST", "/api/v1/tickets/{number}/comments") and ticket in CLOSED_TICKETS:
        # The requester's late reply opened a ticket of theirs, linked to the closed one.
        opened = answer.json().get("follows_up") if expected == 201 else None
        assert opened == (desk.number(ticket) if seen_as == REQ else None), answer.text
    if seen_as in (REQ, INT):
        # The public view: the requester's address is for the desk's eyes.
        assert desk.tickets[ticket].requester_email not in answer.text
    if route == ("GET", "/api/v1/tickets/{number}") and expected == 200:
        assert ("group_id" in answer.json()) == (seen_as == STAFF)


ROUTE_CELLS = [
    pytest.param(route, role, id=f"{route[0]} {route[1]} | {role}")
    for route in ROUTES
    for role in ROLES
]


@pytest.mark.parametrize(("route", "role"), ROUTE_CELLS)
async def test_every_other_route_answers_each_caller_as_the_table_says(
    desk: Desk, route: tuple[str, str], role: str
) -> None:
    spec = ROUTES[route]
    method = spec.method or route[0]
    credential = await desk.fresh(role) if spec.ends_credential else None

    answer = await desk.call(
        role,
        method,
        spec.path or route[1],
        credential=credential,
        headers=spec.headers,
        json=spec.body_for(role) if spec.body_for else spec.json,
        data=spec.data,
        params=spec.params,
    )

    assert answer.status_code == spec.answers[role], answer.text
    assert leaks(desk, role, answer) == []


@pytest.mark.parametrize("carrier", ["header", "query", "cookie"])
async def test_a_key_opens_its_own_ticket_only_however_it_is_carried(
    desk: Desk, carrier: str
) -> None:
    key = desk.tickets[DESK].access_key

    async def read(ticket: str) -> httpx.Response:
        number = desk.number(ticket)
        sent: dict[str, Any] = {
            "header": {"headers": {"X-Access-Key": key}},
            "query": {"params": {"key": key}},
            # The portal's cookie, named after the ticket it was set for (the DESK's) every time.
            "cookie": {"headers": {"Cookie": f"{access_cookie_name(desk.number(DESK))}={key}"}},
        }[carrier]
        return await desk.call(ANONYMOUS, "GET", f"/api/v1/tickets/{number}", **sent)

    assert (await read(DESK)).status_code == 200
    missing = await read(MISSING)
    for ticket in (NETWORK, UNROUTED, ESCALATED):
        answer = await read(ticket)
        assert answer.status_code == 404
        assert _same_as_missing(answer, desk.number(ticket)) == _same_as_missing(
            missing, MISSING_NUMBER
        )
        assert leaks(desk, KEY_HOLDER, answer, asked_for=ticket) == []


async def test_a_key_in_the_portal_cookie_moves_nothing_from_another_sites_page(
    desk: Desk,
) -> None:
    # The cookie goes with every request the browser makes to the desk, whoever made the page:
    # like a session, it speaks for an unsafe request only from the desk's own pages.
    number = desk.number(DESK)
    cookie = {"Cookie": f"{access_cookie_name(number)}={desk.tickets[DESK].access_key}"}
    path = f"/api/v1/tickets/{number}/comments"
    reply = {"body": "Sent by whoever made the page."}
    for origin in ({}, {"Origin": "https://elsewhere.example"}):
        refused = await desk.call(ANONYMOUS, "POST", path, headers={**cookie, **origin}, json=reply)
        assert refused.status_code == 403, refused.text
        assert error_code(refused) == "cross_site_request"
        assert leaks(desk, ANONYMOUS, refused, asked_for=DESK) == []
    sent = await desk.call(ANONYMOUS, "POST", path, headers={**cookie, **SAME_SITE}, json=reply)
    assert sent.status_code == 201, sent.text


# --- Lists ---------------------------------------------------------------------------------------


async def listed(desk: Desk, role: str, **params: str) -> set[str]:
    answer = await desk.call(role, "GET", "/api/v1/tickets", params={"limit": "100", **params})
    assert answer.status_code == 200, answer.text
    assert leaks(desk, role, answer) == []
    return {item["number"] for item in answer.json()["items"]}


def visible_to(desk: Desk, role: str) -> set[str]:
    return {t.number for t in desk.tickets.values() if SEES[role][t.label] is not None}


LISTERS = [r for r in ROLES if r not in (ANONYMOUS, KEY_HOLDER)]


@pytest.mark.parametrize("role", LISTERS)
async def test_a_list_holds_the_tickets_its_caller_may_see_and_no_other(
    either_desk: Desk, role: str
) -> None:
    desk = either_desk
    seen = await listed(desk, role)
    cast = {t.number for t in desk.tickets.values()}
    assert seen & cast == visible_to(desk, role)
    if role == REQUESTER:
        # Not even the tickets the table opened for others: theirs, and only theirs (with the
        # follow-ups their replies to their closed ticket opened).
        assert seen - desk.follow_ups == visible_to(desk, role)


@pytest.mark.parametrize(
    ("role", "params"),
    [
        (REQUESTER, {"group": "network"}),
        (REQUESTER, {"owner": "piotr"}),
        (REQUESTER, {"q": "Subject of the"}),
        (AGENT, {"group": "network"}),
        (AGENT, {"owner": "piotr"}),
        (OTHER_AGENT, {"group": "service-desk"}),
        (INTEGRATION, {"q": "Subject of the"}),
    ],
    ids=lambda value: (
        value if isinstance(value, str) else "&".join(f"{k}={v}" for k, v in value.items())
    ),
)
async def test_a_filter_narrows_what_a_caller_sees_and_never_widens_it(
    either_desk: Desk, role: str, params: dict[str, str]
) -> None:
    desk = either_desk
    cast = {t.number for t in desk.tickets.values()}
    assert (await listed(desk, role, **params)) & cast <= visible_to(desk, role)


async def test_the_requesters_page_lists_their_tickets_only(desk: Desk) -> None:
    page = await desk.call(REQUESTER, "GET", "/my")
    assert page.status_code == 200
    assert desk.tickets[DESK].subject in page.text
    assert leaks(desk, REQUESTER, page) == []


# --- What a requester may send and do ------------------------------------------------------------

STAFF_ONLY_FIELDS = [
    ("POST", "/comments", {"body": "Only for colleagues.", "visibility": "internal"}, "visibility"),
    ("POST", "/comments", {"body": "Hurry.", "priority": "P1"}, "priority"),
    ("POST", "/status", {"to": "closed", "priority": "P1"}, "priority"),
    ("POST", "/status", {"to": "closed", "owner": "piotr"}, "owner"),
    ("PATCH", "", {"priority": "P1"}, "priority"),
    ("PATCH", "", {"owner": "piotr"}, "owner"),
]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field_name"),
    STAFF_ONLY_FIELDS,
    ids=[f"{m} {s or '/'} {f}" for m, s, _, f in STAFF_ONLY_FIELDS],
)
@pytest.mark.parametrize("role", [REQUESTER, KEY_HOLDER, ANONYMOUS])
async def test_a_requester_sending_a_staff_field_gets_a_422_whichever_ticket_it_names(
    desk: Desk, role: str, method: str, suffix: str, body: dict[str, Any], field_name: str
) -> None:
    answers = {
        ticket: await desk.call(
            role, method, f"/api/v1/tickets/{desk.number(ticket)}{suffix}", json=body
        )
        for ticket in (DESK, NETWORK, MISSING)
    }
    for ticket, answer in answers.items():
        assert answer.status_code == 422, answer.text
        assert error_code(answer) == "validation_error"
        assert [d["field"] for d in answer.json()["error"]["details"]] == [field_name]
        assert leaks(desk, role, answer, asked_for=ticket) == []
    # Refused before the ticket is looked at: own, someone else's or missing, all the same.
    assert len({a.text for a in answers.values()}) == 1


@pytest.mark.parametrize("holder", ["session", "key"])
async def test_a_requester_only_confirms_or_reopens_a_resolution(desk: Desk, holder: str) -> None:
    # A requester of their own, so the cast's lists stay as the table says.
    ticket = await desk.open_ticket(f"workflow {holder}", f"farid{holder}", group=SERVICE_DESK)
    requester = (
        await desk.requester_session(ticket.requester_email)
        if holder == "session"
        else Credential(headers={"X-Access-Key": ticket.access_key})
    )
    path = f"/api/v1/tickets/{ticket.number}/status"

    async def move(to: str, credential: Credential) -> httpx.Response:
        body = {"to": to, "reason": "The matrix says so."}
        return await desk.call(REQUESTER, "POST", path, credential=credential, json=body)

    async def refused_everything_but(*allowed: str) -> None:
        for to in STATUSES:
            if to not in allowed:
                answer = await move(to, requester)
                assert answer.status_code == 409, (to, answer.text)
                assert answer.json()["error"]["details"][0]["allowed"] == list(allowed)

    agent = desk.credentials[AGENT]
    await refused_everything_but()  # open: nothing is the requester's to do
    assert (await move("resolved", agent)).status_code == 200
    await refused_everything_but("open", "closed")
    assert (await move("open", requester)).status_code == 200  # reopened
    await refused_everything_but()
    assert (await move("resolved", agent)).status_code == 200
    assert (await move("closed", requester)).status_code == 200  # confirmed
    await refused_everything_but()


async def test_an_internal_note_reaches_staff_and_never_the_requester(desk: Desk) -> None:
    note = "Internal: the matrix suspects the printer driver."
    path = f"/api/v1/tickets/{desk.number(DESK)}"
    added = await desk.call(
        AGENT, "POST", f"{path}/comments", json={"body": note, "visibility": "internal"}
    )
    assert added.status_code == 201, added.text
    assert note in (await desk.call(MANAGER, "GET", path)).text
    for role in (REQUESTER, KEY_HOLDER, INTEGRATION):
        assert note not in (await desk.call(role, "GET", path)).text
    assert note not in (await desk.call(REQUESTER, "GET", f"/t/{desk.number(DESK)}")).text
