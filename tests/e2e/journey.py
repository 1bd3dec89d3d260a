"""The first journey, told once and checked the same way on every way of running Spoc."""

from __future__ import annotations

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
