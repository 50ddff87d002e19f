"""Waiting for the server to announce changes in the selected folder: IDLE, else NOOP polling.

IDLE is renewed every ``idle_renew`` seconds (servers may drop one after 30 minutes,
RFC 2177). A wait cancelled mid-IDLE sends DONE and lets the OK arrive in the
background, so the connection stays usable (and `close` can still LOGOUT).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aioimaplib.aioimaplib import AioImapException, Command, IdleCommand

from mailcrm.imap.connection import Connection
from mailcrm.imap.errors import ImapProtocolError
from mailcrm.imap.parse import Line, MailboxEvents, scan_events

log = logging.getLogger(__name__)


class Waiting(Connection):
    """`wait_for_changes`: holds the connection (and its lock) for the whole wait."""

    async def wait_for_changes(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the server to announce new, removed or changed
        messages in the selected folder: IDLE (renewed every ``idle_renew`` seconds) when
        offered, else NOOP every ``poll_interval`` seconds. False when nothing happened."""
        return (await self.wait_for_events(timeout)).changed

    async def wait_for_events(self, timeout: float) -> MailboxEvents:  # noqa: ASYNC109
        """`wait_for_changes`, telling what the server announced (new mail only, or flag
        changes and expunges too), so the caller can skip work the push rules out."""
        self._require_selected("IDLE" if self.has_idle else "NOOP")
        deadline = self._loop.time() + max(0.0, timeout)
        async with self._lock:
            self._check_usable("IDLE")
            if not self.has_idle:
                return await self._poll(deadline)
            while (remaining := deadline - self._loop.time()) > 0:
                if (events := await self._idle_once(min(remaining, self._idle_renew))).changed:
                    return events
            return MailboxEvents()

    async def _poll(self, deadline: float) -> MailboxEvents:
        while True:
            reply = await self._execute("NOOP", lambda: Command("NOOP", self._tag(), loop=self._loop))
            self._expect_ok(reply, "NOOP")
            events = scan_events([reply.lines])
            if events.bye:
                raise self._fail(self._lost_error("NOOP", f"server said BYE {events.bye}"))
            if events.changed:
                return events
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return MailboxEvents()
            await self._race(asyncio.sleep(min(remaining, self._poll_interval)), "NOOP polling")

    async def _idle_once(self, window: float) -> MailboxEvents:
        """One IDLE command: start, wait up to ``window`` for a push, DONE."""
        protocol = self._protocol
        if self._idle_ending is not None and not self._idle_ending.done():
            # A cancelled wait left IDLE finishing in the background; let it end first.
            await self._guard(self._idle_ending, "IDLE DONE", self._timeout)
        queue: asyncio.Queue[list[Line]] = protocol.idle_queue
        _drain(queue)
        command = IdleCommand(self._tag(), queue, loop=self._loop)
        idle = asyncio.ensure_future(protocol.execute(command))
        acknowledged = False
        log.debug("IMAP IDLE started on %s (%s)", self.host, self._selected, extra={"action": "imap_idle"})
        try:
            ack = asyncio.ensure_future(protocol.wait_for_idle_response())
            try:
                await self._guard(_first_of(ack, idle), "IDLE", self._timeout)
            finally:
                ack.cancel()
            if idle.done():
                response = idle.result()
                raise ImapProtocolError(
                    f"IMAP IDLE refused by {self.host}: {response.result} {_last_text(response.lines)}",
                    command="IDLE",
                )
            acknowledged = True
            pushed = await self._idle_listen(queue, idle, window)
            if not idle.done():
                protocol.idle_done()
            await self._guard(idle, "IDLE DONE", self._timeout)
            acknowledged = False
            # Pushes that arrived together with the tagged OK never reach the queue.
            events = scan_events([*_drain(queue), list(command.buffer)])
            if events.bye:
                raise self._fail(self._lost_error("IDLE", f"server said BYE {events.bye}"))
            return pushed.plus(events)
        except asyncio.CancelledError:
            if acknowledged and not idle.done() and self._broken is None:
                # Leave IDLE cleanly so close() can still LOGOUT; the OK arrives in the background.
                protocol.idle_done()
                self._keep(idle)
                self._idle_ending = idle
            else:
                idle.cancel()
                self._drop("IDLE cancelled")
            raise
        except AioImapException as exc:
            idle.cancel()
            raise self._fail(ImapProtocolError(f"IMAP IDLE on {self.host}: {exc}", command="IDLE")) from None
        except BaseException:
            idle.cancel()
            raise

    async def _idle_listen(
        self, queue: asyncio.Queue[list[Line]], idle: asyncio.Future[Any], window: float
    ) -> MailboxEvents:
        end = self._loop.time() + window
        while (remaining := end - self._loop.time()) > 0:
            getter = asyncio.ensure_future(queue.get())
            try:
                waiters: set[asyncio.Future[Any]] = {getter, idle, self._lost}
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                events = scan_events([getter.result()])
                if events.bye:
                    raise self._fail(self._lost_error("IDLE", f"server said BYE {events.bye}"))
                if events.changed:
                    log.debug(
                        "IMAP IDLE push on %s: %s", self.host, events, extra={"action": "imap_idle_push"}
                    )
                    return events
            if self._lost.done():
                raise self._fail(self._lost_error("IDLE"))
            if idle.done():
                return MailboxEvents()  # the server ended IDLE itself; the caller starts a new one
        return MailboxEvents()


async def _first_of(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(set(futures), return_when=asyncio.FIRST_COMPLETED)


def _drain(queue: asyncio.Queue[list[Line]]) -> list[list[Line]]:
    items: list[list[Line]] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _last_text(lines: Sequence[Any]) -> str:
    return bytes(lines[-1]).decode("utf-8", "replace") if lines else ""
