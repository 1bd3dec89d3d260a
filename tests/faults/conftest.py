"""The fault suite's stage: a private RabbitMQ node, a cutting proxy in front of it, the mail
sink and one stack of the four processes, shared by every scenario; and the summary lines.

One stack for the whole suite, not one per scenario: migrating four databases and starting four
processes costs over a minute on two shared cores; seven times over would blow the budget.
Scenarios stay apart because each counts only the tickets it opened, waits until the pipeline is
quiet before counting, and starts only once every process is back and ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.faults.load import Tally, extras
from tests.faults.rabbit_node import RabbitNode
from tests.localstack import SERVICE_NAMES, MailSink, ProcessStack
from tests.support import create_postgres_database, drop_postgres_database, unavailable
from tests.tcp_proxy import CuttingProxy

RESULTS: list[Tally] = []
# The session's mail sink, kept for the summary's second count of every scenario.
SINKS: list[MailSink] = []
STARTUP_TIMEOUT = 120


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """Launched, not yet awaited: `stack` waits for it once its databases exist."""
    node = RabbitNode()
    try:
        try:
            node.launch()
        except OSError as error:
            unavailable("a private RabbitMQ node (Debian rabbitmq-server)", error)
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def proxy(rabbit_node: RabbitNode) -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(rabbit_node.amqp_port)
    cutting.start()
    try:
        yield cutting
    finally:
        cutting.stop()


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    SINKS.append(sink)
    try:
        yield sink
    finally:
        sink.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    rabbit_node: RabbitNode,
    proxy: CuttingProxy,
    mail_sink: MailSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ProcessStack]:
    databases = {
        name: await create_postgres_database(f"spoc_faults_{name}") for name in SERVICE_NAMES
    }
    processes = ProcessStack(
        # Every service reaches the broker through the proxy, so any scenario can cut it.
        amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat=10&reconnect_interval=1",
        database_urls=databases,
        smtp_url=mail_sink.url,
        log_dir=tmp_path_factory.mktemp("fault-logs"),
        # A claimed mail whose sender was killed is taken over after the lease: keep it short so
        # the kill -9 scenario sees the re-send (if any) before it counts.
        extra_env={
            "SPOC_NOTIFY_SEND_LEASE": "5",
            # The private node's management API, for the policies each service puts at start
            # (the default, port 15672 of the AMQP host, is the machine's shared broker).
            "SPOC_RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{rabbit_node.management_port}",
        },
    )
    try:
        await asyncio.to_thread(rabbit_node.await_startup)
        await asyncio.to_thread(processes.migrate)
        for service in SERVICE_NAMES:
            processes.launch(service)
        # Four Python processes importing at once on two shared cores: 30 s is not always enough.
        await processes.wait_ready(timeout=STARTUP_TIMEOUT)
        yield processes
    finally:
        processes.stop()
        for url in databases.values():
            await drop_postgres_database(url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault suite: acknowledgements per scenario")
    for tally in RESULTS:
        terminalreporter.write_line(tally.line(), red=tally.bad, green=not tally.bad)
        late = extras(tally.numbers, SINKS[0]) - tally.duplicated if SINKS else 0
        if late:
            terminalreporter.write_line(
                f"{tally.scenario}: {late} more acknowledgement(s) arrived after it was counted",
                red=True,
            )
