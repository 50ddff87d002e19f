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

DEFAULT_IDLE_RENEW = 600.0
# Servers may drop an IDLE that lasts 30 minutes (RFC 2177); renew well before.
MAX_IDLE_RENEW = 29 * 60.0
DEFAULT_POLL_INTERVAL = 30.0


class Waiter:
    """`wait_for_events` on one connection: holds it (and its lock) for the whole wait.

    Owns what only waiting needs: how often IDLE is renewed, how often NOOP polls, and
    the IDLE a cancelled wait left finishing in the background.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.check_timings(idle_renew, poll_interval)
        self._conn = conn
        self._idle_renew = idle_renew
        self._poll_interval = poll_interval
        self._idle_ending: asyncio.Future[Any] | None = None

    @staticmethod
    def check_timings(idle_renew: float, poll_interval: float) -> None:
        """`ValueError` unless 0 < ``idle_renew`` <= `MAX_IDLE_RENEW` and ``poll_interval`` > 0."""
        if not 0 < idle_renew <= MAX_IDLE_RENEW:
            raise ValueError(f"idle_renew must be in (0, {MAX_IDLE_RENEW:g}] seconds")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")

    async def wait_for_changes(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the server to announce new, removed or changed
        messages in the selected folder: IDLE (renewed every ``idle_renew`` seconds) when
        offered, else NOOP every ``poll_interval`` seconds. False when nothing happened."""
        return (await self.wait_for_events(timeout)).changed

    async def wait_for_events(self, timeout: float) -> MailboxEvents:  # noqa: ASYNC109
        """`wait_for_changes`, telling what the server announced (new mail only, or flag
        changes and expunges too), so the caller can skip work the push rules out."""
        conn = self._conn
        conn.require_selected("IDLE" if conn.has_idle else "NOOP")
        deadline = conn.loop.time() + max(0.0, timeout)
        async with conn.lock:
            conn.check_usable("IDLE")
            if not conn.has_idle:
                return await self._poll(deadline)
            while (remaining := deadline - conn.loop.time()) > 0:
                if (events := await self._idle_once(min(remaining, self._idle_renew))).changed:
                    return events
            return MailboxEvents()

    async def _poll(self, deadline: float) -> MailboxEvents:
        conn = self._conn
        while True:
            reply = await conn.execute("NOOP", lambda: Command("NOOP", conn.tag(), loop=conn.loop))
            conn.expect_ok(reply, "NOOP")
            events = scan_events([reply.lines])
            if events.bye:
                raise conn.fail(conn.lost_error("NOOP", f"server said BYE {events.bye}"))
            if events.changed:
                return events
            remaining = deadline - conn.loop.time()
            if remaining <= 0:
                return MailboxEvents()
            await conn.race(asyncio.sleep(min(remaining, self._poll_interval)), "NOOP polling")

    async def _idle_once(self, window: float) -> MailboxEvents:
        """One IDLE command: start, wait up to ``window`` for a push, DONE."""
        conn = self._conn
        protocol = conn.protocol
        if self._idle_ending is not None and not self._idle_ending.done():
            # A cancelled wait left IDLE finishing in the background; let it end first.
            await conn.guard(self._idle_ending, "IDLE DONE", conn.timeout)
        queue: asyncio.Queue[list[Line]] = protocol.idle_queue
        _drain(queue)
        command = IdleCommand(conn.tag(), queue, loop=conn.loop)
        idle = asyncio.ensure_future(protocol.execute(command))
        acknowledged = False
        log.debug("IMAP IDLE started on %s (%s)", conn.host, conn.selected, extra={"action": "imap_idle"})
        try:
            ack = asyncio.ensure_future(protocol.wait_for_idle_response())
            try:
                await conn.guard(_first_of(ack, idle), "IDLE", conn.timeout)
            finally:
                ack.cancel()
            if idle.done():
                response = idle.result()
                raise ImapProtocolError(
                    f"IMAP IDLE refused by {conn.host}: {response.result} {_last_text(response.lines)}",
                    command="IDLE",
                )
            acknowledged = True
            pushed = await self._idle_listen(queue, idle, window)
            if not idle.done():
                protocol.idle_done()
            await conn.guard(idle, "IDLE DONE", conn.timeout)
            acknowledged = False
            # Pushes that arrived together with the tagged OK never reach the queue.
            events = scan_events([*_drain(queue), list(command.buffer)])
            if events.bye:
                raise conn.fail(conn.lost_error("IDLE", f"server said BYE {events.bye}"))
            return pushed.plus(events)
        except asyncio.CancelledError:
            if acknowledged and not idle.done() and conn.broken is None:
                # Leave IDLE cleanly so close() can still LOGOUT; the OK arrives in the background.
                protocol.idle_done()
                conn.keep(idle)
                self._idle_ending = idle
            else:
                idle.cancel()
                conn.drop("IDLE cancelled")
            raise
        except AioImapException as exc:
            idle.cancel()
            raise conn.fail(ImapProtocolError(f"IMAP IDLE on {conn.host}: {exc}", command="IDLE")) from None
        except BaseException:
            idle.cancel()
            raise

    async def _idle_listen(
        self, queue: asyncio.Queue[list[Line]], idle: asyncio.Future[Any], window: float
    ) -> MailboxEvents:
        conn = self._conn
        end = conn.loop.time() + window
        while (remaining := end - conn.loop.time()) > 0:
            getter = asyncio.ensure_future(queue.get())
            try:
                waiters: set[asyncio.Future[Any]] = {getter, idle, conn.lost}
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                events = scan_events([getter.result()])
                if events.bye:
                    raise conn.fail(conn.lost_error("IDLE", f"server said BYE {events.bye}"))
                if events.changed:
                    log.debug(
                        "IMAP IDLE push on %s: %s", conn.host, events, extra={"action": "imap_idle_push"}
                    )
                    return events
            if conn.lost.done():
                raise conn.fail(conn.lost_error("IDLE"))
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
