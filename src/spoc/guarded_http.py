"""uvicorn's fast HTTP/1.1 protocol (httptools) with limits on each request's head.

uvicorn's h11 protocol refuses a head over 16 KiB, but its httptools one, which `spoc serve`
and `spoc up` run for speed, takes any number of header fields of any size (20,000 fields,
2 MB, measured) and waits forever for a head that trickles in. Here a head (request line and
header fields) must stay within MAX_HEAD_BYTES and MAX_HEADER_FIELDS, or is answered 431, and
must arrive within HEAD_SECONDS of its first byte (or of the connection), or is answered 408;
either way the connection is closed. Bodies have their own timeout (spoc_platform.web).
"""

from __future__ import annotations

import asyncio
import json

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# As h11's default, and more than any browser sends (nginx's default is 8 KiB per line).
MAX_HEAD_BYTES = 16 * 1024
# Apache's LimitRequestFields default.
MAX_HEADER_FIELDS = 100
HEAD_SECONDS = 10.0


def _too_large(limit: int) -> tuple[int, str, str]:
    return 431, "headers_too_large", f"request line and header fields exceed {limit} bytes"


class _HeadRefused(httptools.HttpParserError):
    """Raised in a parser callback: uvicorn answers any parser error, and we say which."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES
    max_header_fields = MAX_HEADER_FIELDS
    head_seconds = HEAD_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refusal: tuple[int, str, str] | None = None
        self._head_bytes = 0
        self._head_begun = False
        self._awaiting_head = True
        self._raw_head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        # A connection that never sends a request holds a socket all the same.
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._raw_head_bytes += len(data)
        super().data_received(data)
        # httptools hands over a header field only once it is whole: one that never ends is
        # caught here, by the bytes read while a head is unfinished (within one read's size).
        if (
            self._awaiting_head
            and self._raw_head_bytes > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._answer_and_close(*_too_large(self.max_head_bytes))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_begun = True
        self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        if len(self.headers) >= self.max_header_fields:
            self._refuse(
                431, "too_many_headers", f"more than {self.max_header_fields} header fields"
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_begun = False
        self._awaiting_head = False
        self._raw_head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What follows is the next request's head (counted from the next read on).
        self._awaiting_head = True

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._answer_and_close(*self._refusal)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refuse(*_too_large(self.max_head_bytes))

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = (status, code, message)
        raise _HeadRefused(message)

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits behind a request still being answered: not the client's
            # slowness. Its time starts again.
            self._start_head_timer()
            return
        if not self._head_begun:
            # Nothing asked: nothing to answer.
            self.transport.close()
            return
        message = f"the request head did not arrive within {self.head_seconds:g} s"
        self._answer_and_close(408, "request_timeout", message)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        self.logger.warning("Refused a request head: %s", message)
        body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
