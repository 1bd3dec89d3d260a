"""The first journey, told once and checked the same way on every way of running Spoc."""

from __future__ import annotations

import subprocess
import sys
from email import message_from_string
from email.policy import default
from typing import Any

import httpx

from tests.support import eventually

NEW_TICKET: dict[str, Any] = {
    "subject": "VPN drops every few minutes",
    "description": "Since this morning the VPN disconnects every 5 minutes.",
    "type": "incident",
    "impact": "high",
    "urgency": "medium",
    "category": "network",
    "requester": {"name": "Reza Karimi", "email": "reza@example.org", "locale": "fa-IR"},
}
EXPECTED_TIMELINE = ["created", "routed", "targets_set", "notified"]


async def open_ticket(
    client: httpx.AsyncClient, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/api/v1/tickets", json=body or NEW_TICKET)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["number"].startswith("SD-") and created["status"] == "new"
    return created


async def acknowledged_view(client: httpx.AsyncClient, created: dict[str, Any]) -> dict[str, Any]:
    """Waits until the requester's view shows the whole journey, and returns it."""

    async def view() -> dict[str, Any] | None:
        response = await client.get(
            f"/api/v1/tickets/{created['number']}", headers={"X-Access-Key": created["access_key"]}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        kinds = [entry["kind"] for entry in body["timeline"]]
        return body if all(k in kinds for k in EXPECTED_TIMELINE) else None

    return await eventually(view, timeout=20, message="journey not complete")


def assert_requester_view(view: dict[str, Any], created: dict[str, Any]) -> None:
    assert view["number"] == created["number"]
    assert view["status"] == "open"
    assert view["priority"] == "P2"  # high impact × medium urgency in the default matrix
    assert view["owner"]["name"]
    assert view["team"] == {"name": "Service Desk", "tier": 1}
    targets = view["targets"]
    assert targets["first_response_due_at"] and targets["resolution_due_at"]
    assert targets["first_response_due_at"] < targets["resolution_due_at"]
    assert sorted(e["kind"] for e in view["timeline"]) == sorted(EXPECTED_TIMELINE)


def assert_acknowledgement(message: Any, created: dict[str, Any], portal_url: str) -> None:
    assert created["number"] in message["Subject"]
    assert message["To"].endswith("<reza@example.org>")
    assert message["Auto-Submitted"] == "auto-replied"
    # The sink hands over compat32 messages, the Maildir modern ones: read both the same way.
    parsed = message_from_string(message.as_string(), policy=default)
    text = parsed.get_body(("plain",)).get_content()
    assert created["number"] in text
    assert f"{portal_url}/t/{created['number']}?key={created['access_key']}" in text


# The agent of the second half of the journey, created as an operator would (`spoc staff`). In
# the default desk's service-desk group, where routing sends NEW_TICKET.
AGENT = {"id": "sara", "name": "Sara Ahmadi", "email": "sara@example.org"}
AGENT_PASSWORD = "long-enough-password-1"
INTERNAL_NOTE = "Looks like the 4.2 client bug; network knows it."


def operator_creates_agent(where: list[str], env: dict[str, str] | None = None) -> None:
    """`spoc staff create` then `spoc staff set-password --password-stdin`, as commands: `where`
    is `--data-dir …` for the embedded default, or nothing with SPOC_INTAKE_* in `env`."""
    spoc = [sys.executable, "-m", "spoc.cli", "staff"]
    create = [*spoc, "create", "--id", AGENT["id"], "--name", AGENT["name"]]
    create += ["--email", AGENT["email"], "--role", "agent", "--group", "service-desk", *where]
    commands = [
        (create, None),
        ([*spoc, "set-password", AGENT["id"], "--password-stdin", *where], f"{AGENT_PASSWORD}\n"),
    ]
    for command, given in commands:
        run = subprocess.run(
            command, input=given, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, f"{command[3:5]}: {run.stderr}"


async def agent_works_the_ticket(client: httpx.AsyncClient, created: dict[str, Any]) -> None:
    """Issue 7's journey, after the acknowledgement: the agent signs in, lists, replies (and
    notes internally), sets pending; the requester replies; the agent resolves; the requester
    confirms and rates, and never sees the internal note."""
    number = created["number"]
    ticket = f"/api/v1/tickets/{number}"
    # A browser sends its page's Origin on unsafe requests; the cookie session insists on it.
    origin = str(client.base_url).rstrip("/")
    requester = {"X-Access-Key": created["access_key"]}

    signed_in = await client.post(
        "/api/v1/session",
        json={"email": AGENT["email"], "password": AGENT_PASSWORD},
        headers={"Origin": origin},
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["role"] == "agent" and signed_in.json()["id"] == AGENT["id"]
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    session = signed_in.cookies["spoc_session"]
    # Kept apart from the client: the requester's calls below must not ride on it.
    client.cookies.clear()
    agent = {"Cookie": f"spoc_session={session}", "Origin": origin}

    listed = await client.get("/api/v1/tickets", params={"status": "open"}, headers=agent)
    assert listed.status_code == 200, listed.text
    assert number in [item["number"] for item in listed.json()["items"]]
    # The agent sees where the ticket stands: sla's clocks as intake learnt them from its
    # events, and the acknowledgement notify reported sending (the requester sees neither).
    first_look = (await client.get(ticket, headers=agent)).json()
    assert first_look["sla"]["state"] == "running", first_look["sla"]
    assert first_look["sla"]["resolution"]["due_at"] is not None
    assert [
        (n["kind"], n["outcome"], n["recipient_kind"]) for n in first_look["notifications"]
    ] == [("acknowledgement", "sent", "requester")]
    listed_at_risk = await client.get(
        "/api/v1/tickets", params={"sla": ["at_risk", "breached"]}, headers=agent
    )
    assert number not in [item["number"] for item in listed_at_risk.json()["items"]]

    async def agent_says(path: str, body: dict[str, Any], expected: int) -> dict[str, Any]:
        answer = await client.post(f"{ticket}/{path}", json=body, headers=agent)
        assert answer.status_code == expected, answer.text
        result: dict[str, Any] = answer.json()
        return result

    # Take and hand over (routing decides and answers): the ticket goes to a colleague, and the
    # agent takes it back; the requester sees who handles it.
    async def owned_by(who: str) -> dict[str, Any] | None:
        seen: dict[str, Any] = (await client.get(ticket, headers=agent)).json()
        return seen if seen["owner_id"] == who else None

    async def routed_view() -> dict[str, Any] | None:
        seen: dict[str, Any] = (await client.get(ticket, headers=agent)).json()
        return seen if seen["owner_id"] else None

    # Routing picks the less loaded of the front line's two agents: either may have it.
    routed = await eventually(routed_view, timeout=20, message="routing gave it no owner")
    asked: list[str] = []
    if routed["owner_id"] != "piotr":
        await agent_says("assignments", {"agent": "piotr", "reason": "Piotr knows VPNs"}, 202)
        await eventually(lambda: owned_by("piotr"), timeout=20, message="not handed to piotr")
        asked.append(f"{AGENT['name']} asked for piotr to take this ticket: Piotr knows VPNs")
    await agent_says("assignments", {"agent": AGENT["id"]}, 202)
    taken = await eventually(lambda: owned_by(AGENT["id"]), timeout=20, message="not taken back")
    asked.append(f"{AGENT['name']} asked to take this ticket.")
    assert routed["group_id"] == taken["group_id"] == "service-desk"
    assert [e["summary"] for e in taken["timeline"] if e["kind"] == "assignment_requested"] == asked
    assert "assigned" in [e["kind"] for e in taken["timeline"]]
    handed = await client.get(ticket, headers=requester)
    assert handed.json()["owner"] == {"name": AGENT["name"]}
    assert "Piotr knows VPNs" not in handed.text

    # A functional escalation (D3, D8): desktop support helps, the requester sees the new team,
    # and the agent stays their one contact.
    await agent_says("escalations", {"to_group": "desktop-support", "reason": "Reimage?"}, 202)

    async def escalated() -> dict[str, Any] | None:
        seen: dict[str, Any] = (await client.get(ticket, headers=requester)).json()
        return seen if seen["team"]["name"] == "Desktop Support" else None

    referred = await eventually(escalated, timeout=20, message="routing did not escalate")
    assert referred["owner"] == {"name": AGENT["name"]} and referred["team"]["tier"] == 2
    assert "Reimage?" not in str(referred)

    # Re-classified (D24): the whole office is affected, so routing re-triages P2 → P1; the
    # team and the owner stay.
    assert referred["priority"] == "P2"
    changed = await client.patch(ticket, json={"urgency": "high"}, headers=agent)
    assert changed.status_code == 200, changed.text

    async def retriaged() -> dict[str, Any] | None:
        seen: dict[str, Any] = (await client.get(ticket, headers=requester)).json()
        return seen if seen["priority"] == "P1" else None

    raised = await eventually(retriaged, timeout=20, message="routing did not re-triage")
    assert raised["team"]["name"] == "Desktop Support"
    assert raised["owner"] == {"name": AGENT["name"]}

    # Tier 2 asks tier 3; each tier hands it back when done, one at a time (D3): at every step
    # the requester sees the team that has it (D8) and the same owner.
    async def with_team(name: str, tier: int) -> dict[str, Any] | None:
        seen: dict[str, Any] = (await client.get(ticket, headers=requester)).json()
        return seen if (seen["team"]["name"], seen["team"]["tier"]) == (name, tier) else None

    await agent_says("escalations", {"to_group": "network", "reason": "Looks like the VPN"}, 202)
    for team, tier in [("Network Operations", 3), ("Desktop Support", 2), ("Service Desk", 1)]:
        step = await eventually(
            lambda team=team, tier=tier: with_team(team, tier),  # type: ignore[misc]
            timeout=20,
            message=f"the ticket did not reach {team}",
        )
        assert step["owner"] == {"name": AGENT["name"]}
        if tier > 1:
            await agent_says("hand-back", {"reason": f"Done in {team}"}, 202)
    handed_back = (await client.get(ticket, headers=agent)).json()
    assert [e["summary"] for e in handed_back["timeline"] if e["kind"] == "handed_back"] == [
        "Back with Desktop Support (tier 2); your contact stays the same.",
        "Back with Service Desk (tier 1); your contact stays the same.",
    ]
    assert "Done in Network Operations" in str(handed_back["timeline"])
    assert "Done in" not in (await client.get(ticket, headers=requester)).text

    reply = await agent_says(
        "comments", {"body": "Which VPN client version do you run?", "visibility": "public"}, 201
    )
    assert reply["visibility"] == "public" and reply["author"]["kind"] == "agent"
    await agent_says("comments", {"body": INTERNAL_NOTE, "visibility": "internal"}, 201)
    pending = await agent_says(
        "status", {"to": "pending", "reason": "Tell us the VPN client's version"}, 200
    )
    assert (pending["from_status"], pending["to_status"]) == ("open", "pending")

    answered = await client.post(
        f"{ticket}/comments", json={"body": "Version 4.2.1"}, headers=requester
    )
    assert answered.status_code == 201, answered.text
    assert answered.json()["author"]["kind"] == "requester"
    after_reply = await client.get(ticket, headers=agent)
    assert after_reply.json()["status"] == "in_progress"  # the requester's answer resumes it

    resolved = await agent_says("status", {"to": "resolved", "reason": "Client upgraded"}, 200)
    assert resolved["to_status"] == "resolved"

    confirmed = await client.post(f"{ticket}/status", json={"to": "closed"}, headers=requester)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["from_status"], confirmed.json()["to_status"]) == (
        "resolved",
        "closed",
    )
    rated = await client.post(
        f"{ticket}/feedback", json={"rating": 5, "comment": "Quick and clear"}, headers=requester
    )
    assert rated.status_code == 201, rated.text
    assert rated.json()["rating"] == 5

    seen_by_agent = (await client.get(ticket, headers=agent)).json()
    assert INTERNAL_NOTE in [c["body"] for c in seen_by_agent["comments"]]
    view = await client.get(ticket, headers=requester)
    assert view.status_code == 200, view.text
    public = view.json()
    assert public["status"] == "closed"
    assert [c["body"] for c in public["comments"]] == [
        "Which VPN client version do you run?",
        "Version 4.2.1",
    ]
    kinds = [entry["kind"] for entry in public["timeline"]]
    assert kinds.count("commented") == 2 and "feedback" in kinds
    assert [
        e["summary"].split(" by ")[0] for e in public["timeline"] if e["kind"] == "status_changed"
    ] == [
        "open → pending",
        "pending → in progress",
        "in progress → resolved",
        "resolved → closed",
    ]
    assert "internal_note" not in kinds
    assert "sla" not in public and "notifications" not in public
    assert INTERNAL_NOTE not in view.text and '"internal"' not in view.text
