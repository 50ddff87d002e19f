"""SMTP command pipelining (RFC 2920) on a connection opened by aiosmtplib.

aiosmtplib reads exactly one reply per command and drops replies nobody is
waiting for, so MAIL, RCPT and DATA written in one go would lose two of their
three replies. `ReplyTap` sits between the transport and aiosmtplib's protocol
(`transport.set_protocol`, a public asyncio API): while an `exchange` runs it
parses and queues every reply itself; the rest of the time it hands the bytes
to aiosmtplib untouched, so EHLO, RSET, QUIT and the connection's end keep
working through aiosmtplib. One transaction then costs two writes and two
waits instead of four: a third of the sender's SMTP CPU.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiosmtplib import SMTP, SMTPReadTimeoutError, SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

MAX_REPLY_BYTES = 65_536  # a reply this long is a broken or hostile server


class PipelineBroken(SMTPServerDisconnected):
    """The connection ended before every reply came; `replies` holds those that did."""

    def __init__(self, replies: list[SMTPResponse], cause: BaseException | None) -> None:
        super().__init__("Connection lost")
        self.replies = replies
        self.__cause__ = cause


class ReplyTap(asyncio.Protocol):
    """Collects pipelined replies for an aiosmtplib connection; see the module docstring."""

    def __init__(self, inner: SMTPProtocol) -> None:
        self._inner = inner
        self._buffer = bytearray()
        self._replies: list[SMTPResponse] = []
        self._lines: list[bytes] = []
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @classmethod
    def install(cls, client: SMTP) -> ReplyTap | None:
        """Put a tap on a connected client whose server offers PIPELINING; None otherwise."""
        inner = client.protocol
        transport = inner.transport if inner is not None else None
        if inner is None or transport is None or not client.supports_extension("pipelining"):
            return None
        tap = cls(inner)
        transport.set_protocol(tap)
        return tap

    async def exchange(self, data: bytes, replies: int, within: float | None) -> list[SMTPResponse]:
        """Write `data` (one or more commands) and return its `replies` replies, in order.

        Raises `PipelineBroken` (with the replies that came) when the connection
        ends first, `SMTPReadTimeoutError` after `within` seconds without all of them.
        """
        if self._waiter is not None:
            raise RuntimeError("an exchange is already running on this connection")
        transport = cast(asyncio.WriteTransport | None, self._inner.transport)
        if self._closed or transport is None or transport.is_closing():
            raise PipelineBroken([], None)
        self._replies, self._lines, self._wanted = [], [], replies
        self._buffer.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            transport.write(data)
            async with asyncio.timeout(within):
                await self._waiter
        except TimeoutError:
            raise SMTPReadTimeoutError("Timed out waiting for server response") from None
        finally:
            self._waiter, self._wanted = None, 0
        return self._replies

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._inner.data_received(data)
            return
        self._buffer += data
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._buffer.clear()
            self._fail(SMTPResponseException(500, "Response too long"))
            return
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._fail(exc)
            return
        if len(self._replies) >= self._wanted and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool | None:
        self._fail(PipelineBroken(self._replies, None))
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._fail(PipelineBroken(self._replies, exc))
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- replies --------------------------------------------------------------------------------

    def _parse(self) -> None:
        """Move every complete reply out of the buffer (a reply may span several lines)."""
        buffer = self._buffer
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            line = bytes(buffer[start : end + 1])
            start = end + 1
            if not line[:3].isdigit():
                text = line.decode("utf-8", "replace").strip()
                raise SMTPResponseException(500, f"Malformed SMTP response line: {text}")
            self._lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                message = b"\n".join(self._lines).decode("utf-8", "surrogateescape")
                self._replies.append(SMTPResponse(int(line[:3]), message))
                self._lines = []
        del buffer[:start]

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()  # retrieved: the awaiting exchange re-raises it
