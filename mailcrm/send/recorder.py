"""Group commit for the sender's hot path: many rows' writes in one transaction.

Per message the sender writes twice: `attempt_started_at` before the final "." (it
must be durable before the dot) and `sent` after the 250. One transaction each
would cap a process at a few hundred emails/s, so every lane hands its writes to one
`Recorder`, which commits whatever has queued up meanwhile in a single transaction
on a connection of its own (`outbox.RecordConnection`) while the previous one runs.

Ordering keeps the crash guarantee: a lane queues its row's `sent` before it asks to
start its next row, and a start is granted only once the commit holding it is done;
the queue is committed in order, so the earlier `sent` is durable no later than the
next start. A kill therefore leaves at most one row per connection inside an SMTP
transaction. `flush` waits for everything queued so far (before claims are given
back: a pending `sent` would otherwise look like an interrupted transaction).

Commits cost about the same whatever they hold, so when the last one was quick and
few writes are queued, the recorder lingers (`LINGER` seconds at most) for more:
until `GROUP` writes are queued, every lane waits on its start (nothing more can
come), or someone flushes. A start thus waits at most `LINGER` longer than it would
without lingering, and a loaded sender (slow commits, long queues) never lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from mailcrm.errors import DatabaseError
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail, SentRecord

log = logging.getLogger(__name__)

MARK_TRIES = 3
"""Commits tried before giving up: a lost `sent` means a duplicate later, so try hard."""
LINGER = 0.005
"""Seconds a commit may wait for more writes (bounds the extra wait of a lane's start).
5 ms doubles the writes per commit and beat 1.5 and 3 ms on `benchmarks/send_smtp.py`."""
GROUP = 128
"""Queued writes that are worth a commit at once."""
QUICK = 0.02
"""A commit that took longer than this (seconds) is slow: the next one does not linger."""


class Recorder:
    """Commits the lanes' starts and sends in shared transactions, in the order queued."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        *,
        retry_delay: float = 0.5,
        lanes: Callable[[], int] | None = None,
        linger: float = LINGER,
        group: int = GROUP,
    ) -> None:
        """`lanes`: how many lanes may still queue a start (no lingering without it)."""
        self._db = db
        self._lanes = lanes
        self._linger = linger if lanes is not None else 0.0
        self._group = group
        self._ready: asyncio.Future[None] | None = None  # set while lingering
        self._last = 0.0  # seconds the last commit took
        self._connection = outbox.RecordConnection(db)
        self._busy = False
        self._clock = clock
        self._retry_delay = retry_delay
        self._starting: list[tuple[ClaimedEmail, asyncio.Future[bool]]] = []
        self._sent: list[SentRecord] = []
        self._barriers: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            task, self._task = self._task, None
            try:
                if task is not None:
                    task.cancel()
                    await asyncio.wait([task])  # unlike awaiting it, keeps a cancellation of the caller
            finally:
                if not self._busy:  # else the thread still commits; the connection goes with it
                    self._connection.close()

    async def starting(self, row: ClaimedEmail) -> bool:
        """Record that `row`'s final "." is about to go; False: the row is no longer ours.

        Raises `DatabaseError` when it could not be recorded (then the dot must not go).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._starting.append((row, future))
        self._wake.set()
        self._nudge()
        return await future

    def sent(self, record: SentRecord) -> None:
        """Queue a delivered row; it is committed before any later `starting` is granted."""
        self._sent.append(record)
        self._wake.set()
        self._nudge()

    def _nudge(self) -> None:
        """End the lingering once waiting longer cannot pay (see the module docstring)."""
        ready = self._ready
        if ready is None or ready.done():
            return
        if (
            self._barriers
            or len(self._starting) + len(self._sent) >= self._group
            or (self._lanes is not None and len(self._starting) >= self._lanes())
        ):
            ready.set_result(None)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (or given up on).

        Returns early if the committing task ends first (it was cancelled, e.g. when
        `asyncio.run` cancels every task on its way out): nobody would set the barrier.
        """
        task = self._task
        if task is None or task.done():
            return
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers.append(barrier)
        self._wake.set()
        self._nudge()
        await asyncio.wait([barrier, task], return_when=asyncio.FIRST_COMPLETED)

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Commit everything queued so far, then commit nothing more until the block ends.

        Inside, the database holds exactly the sends queued before the block, so a
        count read there plus the sends queued since is exact.
        """
        async with self._lock:
            await self._commit_queued()
            yield

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._linger and self._last < QUICK:
                await self._gather()
            self._wake.clear()
            async with self._lock:
                await self._commit_queued()

    async def _gather(self) -> None:
        """Linger up to `linger` seconds for more writes, unless `_nudge` says not to."""
        loop = asyncio.get_running_loop()
        self._ready = ready = loop.create_future()
        self._nudge()
        if ready.done():
            self._ready = None
            return
        timer = loop.call_later(self._linger, _settle, ready)
        try:
            await ready
        finally:
            timer.cancel()
            self._ready = None

    async def _commit_queued(self) -> None:
        starting, self._starting = self._starting, []
        sent, self._sent = self._sent, []
        barriers, self._barriers = self._barriers, []
        try:
            if starting or sent:
                await self._commit(starting, sent)
        except Exception as exc:  # a bug: fail the waiting lanes rather than leave them hanging
            log.exception("recording sends failed", extra={"action": "send_record_failed"})
            for _row, future in starting:
                if not future.done():
                    future.set_exception(exc)
        finally:
            for barrier in barriers:
                if not barrier.done():
                    barrier.set_result(None)

    async def _commit(
        self, starting: list[tuple[ClaimedEmail, asyncio.Future[bool]]], sent: list[SentRecord]
    ) -> None:
        rows = [row for row, future in starting if not future.done()]  # done: its lane was cancelled
        for attempt in range(1, MARK_TRIES + 1):
            try:
                self._busy = True
                began = time.monotonic()
                try:
                    started, first = await asyncio.to_thread(
                        self._connection.record, sent=sent, starting=rows, now=self._clock()
                    )
                finally:
                    self._busy = False
                    self._last = time.monotonic() - began
                break
            except DatabaseError as exc:
                if attempt < MARK_TRIES:
                    await asyncio.sleep(self._retry_delay * 2**attempt)
                    continue
                # Starts fail (their dots are not sent); sends go back to the head of the
                # queue, so they still precede any later start of their connection. If
                # they never commit, their rows are given back as interrupted and resent
                # once at most.
                self._sent[:0] = sent
                log.error(
                    "could not record %s sent and %s starting outbox rows: %s",
                    len(sent),
                    len(rows),
                    exc,
                    extra={"action": "send_record_failed"},
                )
                for _row, future in starting:
                    if not future.done():
                        future.set_exception(exc)
                return
        for row, future in starting:
            if not future.done():
                future.set_result(row.id in started)
        for record in sent:
            _log_sent(record, record.row.id in first)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _log_sent(record: SentRecord, first: bool) -> None:
    row = record.row
    if not first:
        log.warning(
            "outbox row %s was already sent: this was a second copy",
            row.id,
            extra={"action": "send_duplicate", "outbox_id": row.id, "message_id": row.message_id},
        )
    log.info(
        "sent outbox row %s (%s) to customer %s",
        row.id,
        row.rule,
        row.customer_id,
        extra={
            "action": "email_sent",
            "outbox_id": row.id,
            "rule": row.rule,
            "customer_id": row.customer_id,
            "message_id": row.message_id,
            "reply": record.reply,
        },
    )
