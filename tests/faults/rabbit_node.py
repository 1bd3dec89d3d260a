"""A RabbitMQ node of the fault suite's own, from the machine's Debian install, so that restarting
it and raising its memory alarm disturb nobody else's tests on the shared broker."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RABBITMQ_BIN = Path(os.environ.get("SPOC_FAULTS_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
# rabbitmqctl and friends listen for Erlang distribution on 35672–35682 (RABBITMQ_CTL_DIST_PORT_MIN
# and +10); a node listening there makes its own CLI calls fail with eaddrinuse, so never pick them.
CLI_DIST_PORTS = range(35672, 35683)
DEFAULT_WATERMARK = 0.4


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in CLI_DIST_PORTS:
            return port


class RabbitNode:
    """One node under a temporary directory: its own name, cookie, ports, data and logs.

    `launch()` starts it, `await_startup()` waits until it serves AMQP; `stop()` always ends it
    (and its process group, which it started itself) and removes the directory."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="spoc-faults-rabbit-"))
        self.name = f"spoc-faults-{secrets.token_hex(4)}@localhost"
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self._server: subprocess.Popen[bytes] | None = None
        self._api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.management_port}/api",
            auth=("guest", "guest"),
            timeout=10,
        )
        self._write_configuration()

    def _write_configuration(self) -> None:
        cookie = self.directory / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            # The suite's databases and queues are small; skip the free-disk alarm, which a busy
            # shared /tmp could otherwise trip in the middle of an unrelated scenario.
            "disk_free_limit.absolute = 1MB\n"
            # Queue depths in the management API are refreshed this often (5 s by default): the
            # suite waits for empty queues before it counts.
            "collect_statistics_interval = 500\n"
        )
        (self.directory / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # An empty env file of our own, so /etc/rabbitmq/rabbitmq-env.conf (the shared node's
        # name) does not apply.
        (self.directory / "rabbitmq-env.conf").write_text("")

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        d = self.directory
        env.update(
            {
                # The Erlang cookie is read from $HOME: a private one keeps the CLI on our node.
                "HOME": str(d),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
            }
        )
        return env

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def launch(self) -> None:
        """Starts the node without waiting: it boots (~20 s here) while the caller prepares
        the rest; `await_startup()` then waits for it."""
        if shutil.which(str(RABBITMQ_BIN / "rabbitmq-server")) is None:
            raise FileNotFoundError(f"no rabbitmq-server under {RABBITMQ_BIN}")
        with (self.directory / "server.out").open("ab") as log:
            self._server = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def await_startup(self, timeout: float = 180) -> None:
        """`await_startup` fails until the node has registered with epmd: retry it."""
        deadline = time.monotonic() + timeout
        while True:
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError(f"the private RabbitMQ node exited: {self.log_tail()}")
            done = self.ctl("await_startup", "--timeout", "10", check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the private RabbitMQ node did not start: {self.log_tail()}")
            time.sleep(0.5)

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.await_startup()

    def raise_memory_alarm(self) -> None:
        """A watermark below what the node already uses: the alarm fires and publishers block."""
        self.ctl("set_vm_memory_high_watermark", "0.00001")

    def clear_memory_alarm(self) -> None:
        self.ctl("set_vm_memory_high_watermark", str(DEFAULT_WATERMARK))

    def channels(self) -> list[dict[str, Any]]:
        response = self._api.get("/channels")
        response.raise_for_status()
        return list(response.json())

    def memory_alarm(self) -> bool:
        response = self._api.get("/nodes")
        response.raise_for_status()
        return any(node.get("mem_alarm") for node in response.json())

    def queues(self) -> list[dict[str, Any]]:
        response = self._api.get("/queues/%2F")
        response.raise_for_status()
        return list(response.json())

    def connections(self) -> list[dict[str, Any]]:
        response = self._api.get("/connections")
        response.raise_for_status()
        return list(response.json())

    def stop(self) -> None:
        try:
            if self._server is not None and self._server.poll() is None:
                self.ctl("stop", check=False, timeout=60)
                try:
                    self._server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self._server is not None and self._server.poll() is None:
                # Its own session, started above: the shell, beam and erl_child_setup.
                os.killpg(self._server.pid, signal.SIGKILL)
                self._server.wait(timeout=30)
            self._api.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        out = self.directory / "server.out"
        text = out.read_text(errors="replace") if out.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
