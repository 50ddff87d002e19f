"""The sender: claim due outbox rows, send each along its path, give back what is left.

A batch reads top to bottom in `Sender.send_due`:

1. claim: skip, set-based, the due rows a restart finds too late to send, then take a
   lease on up to `sending.batch_size` due rows (`store.outbox.claim`);
2. read their template data and send-time facts set-based (`checks.SendChecks`);
3. run one lane per pooled SMTP connection of each sending account; a lane takes the
   next row and sends it along its path: check, compose, deliver, record
   (`pipeline.RowPath`), counting the typed `Outcome` it ends with;
4. give back every claim still held (`store.outbox.release`) and log the batch.

While a full batch is being sent and its queue runs low, the next batch is claimed in
the background, so the connections never wait for the database between batches. All
lanes' database writes of a batch go through one group commit (`recorder.Recorder`).

`sending.ambiguous` defaults to `resend`: the promise is "nothing lost; a duplicate
only for messages inside an SMTP transaction at a crash". A resend carries the same
Message-ID (clients fold the copies) and happens at most once per row; `hold` trades
that duplicate for a row a person must look at, which for a birthday card usually
means a card that never arrives.

The lease is renewed while the batch runs. On stop, lanes take no new row, in-flight
transactions get `STOP_GRACE` seconds to finish, and every claim still held goes back
to `due` (or, if it was inside a transaction, follows `sending.ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from mailcrm import wiring
from mailcrm.domain.backoff import Backoff
from mailcrm.domain.retry import SEND_SLACK, late_reason
from mailcrm.domain.rules import format_duration
from mailcrm.errors import DatabaseError
from mailcrm.render import TemplateRenderer
from mailcrm.send.checks import SendChecks
from mailcrm.send.compose import Unsubscribe, UnsubscribeUrl
from mailcrm.send.config import SenderConfig
from mailcrm.send.limits import DailyCap, Stopped, wait
from mailcrm.send.outcomes import Outcomes
from mailcrm.send.pipeline import RowPath
from mailcrm.send.recorder import Recorder
from mailcrm.send.results import Outcome, SendStats
from mailcrm.send.sentcopy import SentCopier
from mailcrm.smtp.pool import SmtpPool
from mailcrm.store import keys, outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail
from mailcrm.store.types import utcnow

log = logging.getLogger(__name__)

STOP_GRACE = 6.0
"""Seconds in-flight transactions get to finish after stop (a stopped daemon exits within 10 s)."""


def default_worker_id() -> str:
    """host:pid:random: unique per process, readable in `outbox show`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Sender:
    """Sends due outbox rows through each salesperson's SMTP account."""

    def __init__(
        self,
        db: Database,
        config: SenderConfig,
        renderer: TemplateRenderer,
        *,
        worker_id: str | None = None,
        unsubscribe_url: UnsubscribeUrl | None = None,
        rng: random.Random | None = None,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.db = db
        self.config = config
        self.renderer = renderer
        self.worker_id = worker_id or default_worker_id()
        self.stop_grace = stop_grace
        self.policy = config.retry_policy()
        self._unsubscribe_url = unsubscribe_url  # the web endpoint's hook, once there is one
        self._unsubscribe_key: bytes | None = None  # read (or made) once, by the first batch
        self._rng = rng or random.Random()
        self._pools: dict[str, SmtpPool] = {}
        self._copier = SentCopier() if config.sending.copy_to_sent else None
        self._outcomes = Outcomes(db, config.sending, self.policy, self._rng, self._now)
        self._daily_cap = DailyCap(db, self._now)
        self._stop = asyncio.Event()
        self._offset = timedelta()
        # The running batch (`send_due`): its rows' path, queues per account and lanes.
        self._path: RowPath | None = None
        self._queues: dict[str | None, deque[ClaimedEmail]] = defaultdict(deque)
        self._lanes: dict[str | None, list[asyncio.Task[None]]] = defaultdict(list)
        self._low = asyncio.Event()  # the queues ran low: claim the next batch
        self._active = 0  # lanes running: the recorder stops lingering once all wait on it
        self._customer_locks: dict[int, asyncio.Lock] = {}
        self._customer_users: dict[int, int] = {}

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Send batches until `stop` is set; then finish in-flight work and give back every claim."""
        self._stop = stop
        failures = 0
        log.info("sender started", extra={"action": "sender_started", "worker": self.worker_id})
        try:
            while not stop.is_set():
                try:
                    stats = await self.send_due()
                    failures = 0
                except Exception as exc:  # the database is away, or a bug: pause, then try again
                    failures += 1
                    delay = Backoff(base=1.0, cap=60.0).delay(failures, self._rng)
                    log.warning(
                        "sending paused for %.0f s: %s",
                        delay,
                        exc,
                        exc_info=not isinstance(exc, DatabaseError),
                        extra={"action": "send_paused", "worker": self.worker_id},
                    )
                    await wait(stop, delay)
                    continue
                if stats.claimed >= self.config.sending.batch_size:
                    continue  # more may be due right now
                await wait(stop, interval)
        finally:
            with contextlib.suppress(DatabaseError):
                await asyncio.to_thread(self._release)
            await self.close()
            log.info("sender stopped", extra={"action": "sender_stopped", "worker": self.worker_id})

    async def close(self) -> None:
        """Close SMTP and IMAP connections."""
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)
        if self._copier is not None:
            await self._copier.close()

    def _now(self) -> datetime:
        return utcnow() + self._offset

    async def send_due(self, now: datetime | None = None) -> SendStats:
        """Claim due rows and send them; `now` shifts the clock (tests, replays).
        Returns once no more rows are due (or on stop)."""
        sending = self.config.sending
        if not sending.enabled:
            return SendStats()
        self._offset = (now - utcnow()) if now is not None else timedelta()
        lease = timedelta(seconds=sending.lease_seconds)
        late = await asyncio.to_thread(self._skip_late)
        rows = await asyncio.to_thread(self._claim, lease)
        stats = SendStats(claimed=len(rows) + late, skipped=late)
        if not rows:
            return stats
        try:
            self._path = await self._start_batch(rows)
        except BaseException:
            await asyncio.to_thread(self._release)
            raise
        self._queues, self._lanes, self._low = defaultdict(deque), defaultdict(list), asyncio.Event()
        self._enqueue(rows, stats)
        full = len(rows) >= sending.batch_size
        refill = asyncio.create_task(self._refill(self._path, stats, lease)) if full else None
        heartbeat = asyncio.create_task(self._renew(lease))
        try:
            async with self._path.recorder:
                await self._join(refill)
        finally:
            self._path = None
            self._customer_locks.clear()
            self._customer_users.clear()
            self._queues, self._lanes = defaultdict(deque), defaultdict(list)
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # unlike awaiting it, keeps a cancellation of this task
            stats.count(Outcome.RELEASED, await asyncio.to_thread(self._release))
        log.info(
            "batch: %s claimed, %s sent, %s retried, %s failed, %s skipped",
            stats.claimed,
            stats.sent,
            stats.retried,
            stats.failed,
            stats.skipped + stats.cancelled,
            extra={"action": "send_batch", "worker": self.worker_id, **vars(stats)},
        )
        return stats

    async def _start_batch(self, rows: list[ClaimedEmail]) -> RowPath:
        """The path of this batch's rows, with their send-time facts read set-based."""
        if self._unsubscribe_key is None:
            self._unsubscribe_key = await asyncio.to_thread(self._signing_key)
        recorder = Recorder(self.db, self._now, lanes=lambda: self._active)
        checks = SendChecks(self.db, self.config.sending, recorder)
        await checks.load(rows, self._now())
        return RowPath(
            self.db,
            self.config,
            self.renderer,
            checks=checks,
            recorder=recorder,
            outcomes=self._outcomes,
            daily_cap=self._daily_cap,
            policy=self.policy,
            unsubscribe=Unsubscribe(self._unsubscribe_key, self._unsubscribe_url),
            copier=self._copier,
            stop=self._stop,
            clock=self._now,
        )

    def _signing_key(self) -> bytes:
        """The unsubscribe signing key (stored in the database, shared by every daemon)."""
        with self.db.write() as session:
            return keys.signing_key(session)

    # -- claims (blocking: run them in a thread, except `_renew`) -----------------------------

    def _claim(self, lease: timedelta) -> list[ClaimedEmail]:
        """Up to `sending.batch_size` due rows, held until `lease` from now."""
        sending = self.config.sending
        return outbox.claim(
            self.db, self.worker_id, sending.batch_size, lease, self._now(), ambiguous=sending.ambiguous
        )

    def _release(self) -> int:
        """Give every claim back (one inside a transaction follows `sending.ambiguous`)."""
        return outbox.release(self.db, self.worker_id, self._now(), ambiguous=self.config.sending.ambiguous)

    async def _renew(self, lease: timedelta) -> None:
        """Renew the claims while the batch runs, so nobody takes over live work (until cancelled)."""
        period = max(lease.total_seconds() / 3, 0.2)
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(outbox.extend_lease, self.db, self.worker_id, self._now() + lease)
            except DatabaseError as exc:
                log.warning("could not renew claims: %s", exc, extra={"action": "lease_renew_failed"})

    def _skip_late(self) -> int:
        """Skip, set-based, the due rows never attempted and due longer ago than the planning
        grace (the daemon was down), as the planner does with such occurrences."""
        now, grace = self._now(), self.config.grace
        skipped = outbox.skip_late(
            self.db,
            now - max(grace, SEND_SLACK),
            lambda due_at: late_reason(due_at, now, grace, attempted=False),
            now,
        )
        if skipped:
            log.warning(
                "%s outbox rows skipped as late: due more than %s ago and never attempted",
                skipped,
                format_duration(grace),
                extra={"action": "send_skipped_late", "worker": self.worker_id, "count": skipped},
            )
        return skipped

    # -- lanes -------------------------------------------------------------------------------

    def _enqueue(self, rows: list[ClaimedEmail], stats: SendStats) -> None:
        """Queue rows per sending account; each account gets up to one lane per connection."""
        for row in rows:
            self._queues[row.sender].append(row)
        for sender, queue in self._queues.items():
            pool = self._pool(sender)
            lanes = self._lanes[sender]
            lanes[:] = [lane for lane in lanes if not lane.done()]
            wanted = min(pool.max_connections if pool else 1, len(queue)) - len(lanes)
            lanes += [asyncio.create_task(self._lane(queue, pool, stats)) for _ in range(max(wanted, 0))]

    async def _refill(self, path: RowPath, stats: SendStats, lease: timedelta) -> None:
        """Claim the next batch once half of the queued rows are taken; stop when none are due."""
        batch = self.config.sending.batch_size
        while not self._stop.is_set():
            self._low.clear()
            if sum(len(queue) for queue in self._queues.values()) > batch // 2:
                await self._low.wait()
                continue
            rows = await asyncio.to_thread(self._claim, lease)
            stats.claimed += len(rows)
            if rows:
                await path.checks.add(rows)  # checked when first taken
                self._enqueue(rows, stats)
            if len(rows) < batch:
                return

    async def _join(self, refill: asyncio.Task[None] | None) -> None:
        """Wait for the lanes (and the refill); after stop, in-flight transactions get
        `stop_grace` seconds."""
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                pending = [lane for lanes in self._lanes.values() for lane in lanes if not lane.done()]
                if refill is not None and not refill.done():
                    pending.append(refill)
                if not pending:
                    break
                await asyncio.wait([*pending, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stopper.done():
                    self._low.set()  # the refill sees the stop; a claim under way still ends queued
                    tasks = [lane for lanes in self._lanes.values() for lane in lanes]
                    if refill is not None:
                        tasks.append(refill)
                    _done, late = await asyncio.wait(tasks, timeout=self.stop_grace)
                    for task in late:
                        task.cancel()
                    if late:
                        await asyncio.wait(late)
                    break
            tasks = [lane for lanes in self._lanes.values() for lane in lanes]
            if refill is not None:
                tasks.append(refill)
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.error(
                        "send lane failed: %r",
                        result,
                        exc_info=result,
                        extra={"action": "send_lane_failed", "worker": self.worker_id},
                    )
        finally:
            stopper.cancel()

    def _pool(self, sender: str | None) -> SmtpPool | None:
        if sender is None:
            return None
        pool = self._pools.get(sender)
        if pool is None:
            person = self.config.salesperson(sender)
            if person is None or person.smtp is None:
                return None
            pool = self._pools[sender] = SmtpPool(person.email, wiring.smtp_params(person.smtp))
        return pool

    async def _lane(self, queue: deque[ClaimedEmail], pool: SmtpPool | None, stats: SendStats) -> None:
        """Send the account's queued rows one at a time, each along its path."""
        path = self._path
        assert path is not None
        low = self.config.sending.batch_size // 2
        self._active += 1
        try:
            while queue and not self._stop.is_set():
                row = queue.popleft()
                if len(queue) <= low:
                    self._low.set()
                try:
                    async with self._customer(row.customer_id):
                        outcome = await path.send(row, pool)
                except Stopped:
                    return  # the row is still claimed: given back with the others
                except DatabaseError as exc:
                    log.warning(
                        "outbox row %s: %s",
                        row.id,
                        exc,
                        extra={"action": "send_db_error", "outbox_id": row.id},
                    )
                    continue  # still claimed: given back at the end of the batch
                except Exception as exc:  # a bug must neither stop the batch nor spin on one row
                    log.exception(
                        "outbox row %s: internal error",
                        row.id,
                        extra={"action": "send_bug", "outbox_id": row.id},
                    )
                    later = self._now() + timedelta(seconds=self.policy.base_seconds)
                    note = f"internal error: {exc!r}"
                    with contextlib.suppress(DatabaseError):
                        await asyncio.to_thread(outbox.defer, self.db, row, later, note=note)
                    outcome = Outcome.DEFERRED
                finally:
                    path.checks.forget(row)
                stats.count(outcome)
        finally:
            self._active -= 1

    @contextlib.asynccontextmanager
    async def _customer(self, customer_id: int) -> AsyncIterator[None]:
        """One row of a customer at a time (the frequency cap counts the ones before)."""
        lock = self._customer_locks.setdefault(customer_id, asyncio.Lock())
        self._customer_users[customer_id] = self._customer_users.get(customer_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            users = self._customer_users[customer_id] - 1
            if users:
                self._customer_users[customer_id] = users
            else:
                del self._customer_users[customer_id], self._customer_locks[customer_id]
