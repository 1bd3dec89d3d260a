"""A client generated from intake's /openapi.json by a maintained generator opens a ticket and
reads it back: the document is complete enough to build on, not only to look at."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from spoc_intake.app import create_app
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration

GENERATOR = "openapi-python-client==0.29.1"
PACKAGE = "spoc_intake_client"
ROOT = Path(__file__).resolve().parents[2]


def uv() -> str:
    found = shutil.which("uv") or ROOT / ".tools" / "bin" / "uv"
    return str(found)


async def generate(document: dict[str, Any], into: Path) -> None:
    """Runs the generator in a tool environment of its own: it pins libraries Spoc's own
    environment must not be held back by."""
    spec = into / "openapi.json"
    spec.write_text(json.dumps(document))
    # The interpreter under this venv, by path: a bare `python3.12` may be a pyenv shim for a
    # version pyenv has not selected, which cannot run.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / version
    python = str(base if base.exists() else Path(sys.executable))
    process = await asyncio.create_subprocess_exec(
        uv(),
        "tool",
        "run",
        "--from",
        GENERATOR,
        "openapi-python-client",
        "generate",
        "--path",
        str(spec),
        "--output-path",
        str(into / PACKAGE),
        "--meta",
        "none",
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": python},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    # The generator skips, with a warning, whatever part of a document it cannot read.
    assert "Unable to" not in report and "Warning" not in report, report


@pytest.fixture
async def intake(sqlite_url: str) -> AsyncIterator[ServiceUnderTest]:
    # With an admin token, so the admin operations are in the document the generator reads.
    async with service("intake", sqlite_url, admin_token="t" * 32) as running:
        yield running


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    """A folder the generated package is imported from, forgotten again afterwards."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.timeout(300)  # the first run fetches the generator
async def test_a_generated_client_opens_a_ticket_and_reads_it_back(
    intake: ServiceUnderTest, importable: Path
) -> None:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    await generate(app.openapi(), importable)

    client_module = module("client")
    create_ticket = module("api.tickets.create_ticket")
    get_ticket = module("api.tickets.get_ticket")
    models = module("models")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
    client = client_module.Client(base_url="http://intake").set_async_httpx_client(http)

    async with http:
        created = await create_ticket.asyncio_detailed(
            client=client,
            body=models.TicketCreate.from_dict(NEW_TICKET),
            idempotency_key="generated-client-1",
        )
        assert created.status_code == 201, created.content
        ticket = created.parsed
        assert isinstance(ticket, models.TicketCreatedRead)
        assert ticket.created_at.tzinfo is not None

        read = await get_ticket.asyncio(
            number=ticket.number, client=client, x_access_key=ticket.access_key
        )
        assert isinstance(read, models.TicketRead)
        assert (read.number, read.subject, read.status) == (
            ticket.number,
            NEW_TICKET["subject"],
            "new",
        )

        # Errors come back as the documented error object, typed.
        refused = await get_ticket.asyncio(number=ticket.number, client=client, x_access_key="x")
        assert isinstance(refused, models.ErrorResponse)
        assert refused.error.code == "ticket_not_found"
        invalid = await create_ticket.asyncio(
            client=client,
            body=models.TicketCreate.from_dict(NEW_TICKET),
            idempotency_key="k" * 256,
        )
        assert isinstance(invalid, models.ErrorResponse)
        assert [d.field for d in invalid.error.details] == ["header.Idempotency-Key"]
