"""The connection an `ImapClient` owns: its state and the guarded way to run a command.

One command at a time (`lock`), each raced against "connection lost" and an inactivity
watchdog, and the connection dropped for good when its protocol state becomes unknown.
The commands themselves are plain functions taking a `Connection` (`login`, `folders`,
`fetching`, `changes`, `append`) or the `idle.Waiter`, so this class is the one place
that knows about the lock, the watchdog and the protocol object.

Why the guards: a dropped connection does not fail aioimaplib's pending command (it only
times out) and IDLE can hang forever when the server says BYE (aioimaplib issue #110).
After a timeout, a lost connection or a cancelled command every later call raises
`ImapConnectionError` and the caller reconnects. Server texts pass through `masked`,
so a secret never reaches an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from aioimaplib.aioimaplib import AioImapException, Command

from mailcrm.imap.errors import (
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    ImapTimeout,
)
from mailcrm.imap.params import ImapParams
from mailcrm.imap.parse import Line
from mailcrm.imap.protocol import _Protocol

LOGOUT_TIMEOUT = 5.0
_MASK = "********"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished command: its result word, the untagged lines, and the tagged line's text."""

    result: str
    lines: list[Line]
    text: str


class Connection:
    """One IMAP connection's state and command plumbing; the commands live beside it.

    The state the commands share is plain attributes: ``capabilities`` (read at login),
    ``selected`` (the folder the last successful SELECT/EXAMINE opened: UIDs only mean
    something there), ``condstore_enabled`` and ``qresync_enabled`` (RFC 7162).
    """

    capabilities: frozenset[str]

    def __init__(self, account: ImapParams) -> None:
        self.account = account
        self.host = account.host
        self.port = account.port
        self.capabilities = frozenset()
        self.timeout = account.timeout_seconds
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[Exception | None] = self.loop.create_future()
        self.protocol = _Protocol(self.loop, self._connection_lost)
        self.lock = asyncio.Lock()
        self.secrets: list[str] = []  # masked out of every server text
        self.selected: str | None = None
        self.condstore_enabled = False
        self.qresync_enabled = False
        self._broken: str | None = None
        self._closed = False
        self._background: set[asyncio.Future[Any]] = set()

    # -- capability flags ----------------------------------------------------------------

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    @property
    def has_condstore(self) -> bool:
        return "CONDSTORE" in self.capabilities or "QRESYNC" in self.capabilities

    @property
    def has_qresync(self) -> bool:
        return "QRESYNC" in self.capabilities

    @property
    def has_uidplus(self) -> bool:
        return "UIDPLUS" in self.capabilities

    @property
    def bytes_received(self) -> int:
        """Bytes read from the server so far (progress and metrics)."""
        return int(self.protocol.bytes_received)

    @property
    def broken(self) -> str | None:
        """Why the connection was dropped for good (None while it is usable)."""
        return self._broken

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """LOGOUT (bounded by a short timeout), then drop the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            # With a command in flight in another task there is no clean point for LOGOUT.
            if self._broken is None and not self.lost.done() and not self.lock.locked():
                with contextlib.suppress(ImapError, AioImapException, TimeoutError):
                    async with asyncio.timeout(min(LOGOUT_TIMEOUT, self.timeout)):
                        await self.race(
                            self.protocol.execute(Command("LOGOUT", self.tag(), loop=self.loop)), "LOGOUT"
                        )
        finally:
            self.drop("closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------

    def tag(self) -> str:
        return str(self.protocol.new_tag())

    def write(self, data: bytes) -> None:
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def masked(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, _MASK)
        return text

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def check_usable(self, what: str) -> None:
        if self._closed:
            raise ImapConnectionError(f"IMAP {what}: the connection to {self.host}:{self.port} is closed")
        if self._broken is not None:
            raise ImapConnectionError(
                f"IMAP {what}: the connection to {self.host}:{self.port} is unusable "
                f"({self._broken}); reconnect"
            )
        if self.lost.done():
            raise self.fail(self.lost_error(what))

    def require_selected(self, what: str) -> str:
        self.check_usable(what)
        if self.selected is None:
            raise ImapProtocolError(f"IMAP {what} needs a selected folder; call select() first", command=what)
        return self.selected

    def require_folder(self, folder: str) -> None:
        if self.selected != folder:
            raise ImapProtocolError(
                f"folder {folder!r} was deselected while fetching (now {self.selected!r}); "
                "UIDs only make sense in their folder",
                command="UID FETCH",
            )

    def lost_error(self, what: str, reason: str | None = None) -> ImapConnectionError:
        if reason is None:
            exc = self.lost.result() if self.lost.done() else None
            if exc is None:
                reason = "connection closed by the server"
            else:
                reason = f"connection lost: {os_reason(exc) if isinstance(exc, OSError) else exc}"
            if self.protocol.bye:
                reason += f" (server said BYE {self.protocol.bye})"
            elif self.protocol.greeting_error:
                reason += f" (bad greeting: {self.protocol.greeting_error})"
        return ImapConnectionError(f"IMAP {what} on {self.host}:{self.port} failed: {self.masked(reason)}")

    def fail(self, error: ImapError) -> ImapError:
        """Drop the connection because of ``error`` and return it for raising."""
        self.drop(error.message)
        return error

    def drop(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        transport = self.protocol.transport
        if transport is not None and not transport.is_closing():
            if reason == "closed":
                transport.close()
            else:
                transport.abort()
        for task in list(self.protocol.tasks) + list(self._background):
            task.cancel()

    def keep(self, future: asyncio.Future[Any]) -> None:
        self._background.add(future)
        future.add_done_callback(self._background.discard)
        # A late exception (connection lost) must not be reported as never retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def race(self, awaitable: Awaitable[_T], what: str) -> _T:
        """Await ``awaitable`` unless the connection is lost first."""
        future = asyncio.ensure_future(awaitable)
        try:
            waiters: set[asyncio.Future[Any]] = {future, self.lost}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not future.done():
                future.cancel()
        if future.done() and not future.cancelled():
            return future.result()
        raise self.fail(self.lost_error(what))

    async def guard(self, awaitable: Awaitable[_T], what: str, limit: float) -> _T:
        """Await ``awaitable`` racing the connection-lost future and a watchdog that fires after
        ``limit`` seconds without any byte from the server (a big FETCH that keeps streaming
        is not cut off). A timeout or a cancellation leaves the protocol state unknown, so the
        connection is dropped."""
        future = asyncio.ensure_future(awaitable)
        waiters: set[asyncio.Future[Any]] = {future, self.lost}
        started = self.loop.time()
        try:
            while not future.done():
                quiet_since = max(started, self.protocol.last_activity)
                remaining = quiet_since + limit - self.loop.time()
                if remaining <= 0:
                    raise self.fail(
                        ImapTimeout(
                            f"IMAP {what} on {self.host}:{self.port}: no response for {limit:g} s; "
                            "connection dropped",
                            hint="raise `timeout_seconds` for slow servers",
                        )
                    )
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if self.lost.done() and not future.done():
                    raise self.fail(self.lost_error(what))
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
                self.drop(f"{what} cancelled")
            raise
        finally:
            if not future.done():
                future.cancel()
        return future.result()

    async def execute(self, what: str, make: Callable[[], Any], *, limit: float | None = None) -> Reply:
        """Run one aioimaplib command (built by ``make``) under the watchdog; lock held by caller."""
        self.check_usable(what)
        command = make()
        if isinstance(command, Command):
            awaitable: Awaitable[Any] = self.protocol.execute(command)
        else:
            awaitable = command
        try:
            response = await self.guard(awaitable, what, self.timeout if limit is None else limit)
        except AioImapException as exc:
            raise ImapProtocolError(
                f"IMAP {what} on {self.host}: {self.masked(str(exc))}", command=what
            ) from None
        lines = list(response.lines)
        last = lines.pop() if lines else b""
        text = bytes(last).decode("utf-8", "replace")
        return Reply(str(response.result), lines, text)

    async def run(
        self,
        what: str,
        make: Callable[[], Any],
        *,
        limit: float | None = None,
        expect_ok: bool = True,
    ) -> Reply:
        async with self.lock:
            reply = await self.execute(what, make, limit=limit)
        if expect_ok:
            self.expect_ok(reply, what)
        return reply

    def expect_ok(self, reply: Reply, what: str, *, hint: str | None = None) -> None:
        if reply.result == "OK":
            return
        text = self.masked(reply.text)
        raise ImapProtocolError(
            f"IMAP {what} failed on {self.host}: {reply.result} {text}".rstrip(),
            command=what.split(" ")[0],
            server_text=text,
            hint=hint,
        )


def os_reason(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__
