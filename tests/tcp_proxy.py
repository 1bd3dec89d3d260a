"""A TCP proxy on loopback that can cut every connection through it on demand (connection flaps).

It runs its own event loop in a thread, so the test's blocking calls (rabbitmqctl, process
waits) never stall the traffic it carries."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CuttingProxy:
    """Listens on `port` and forwards each connection to the broker until `cut()`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._writers -= pair
            for w in pair:
                w.close()

    def cut(self) -> int:
        """Closes every open connection at once (an RST on both sides); returns how many."""
        cut = asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)
        self.cuts += 1
        return cut

    async def _cut(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            # SO_LINGER 0 makes close() send RST: both ends see the connection die at once,
            # as with a dropped NAT entry or a restarted load balancer.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        return len(writers) // 2

    def open_connections(self) -> int:
        return len(self._writers) // 2

    def stop(self) -> None:
        async def close() -> None:
            await self._cut()
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
