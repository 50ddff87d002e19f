"""The sender: claim due outbox rows, check them again, render, send, record the outcome.

Per batch: `claim` a lease on up to `sending.batch_size` due rows, read their
template data and send-time facts set-based (`checks`), then run one lane per pooled
SMTP connection of each sending account. A lane takes the next row and

1. checks what may have changed since planning (send time, not plan time): a row
   never attempted and due longer ago than `planning.grace_hours` (the daemon was
   down) is skipped as late, as the planner does with such occurrences; then the
   customer's status, suppression, replies and frequency cap (`checks`);
2. renders and builds the message (`compose`); a template error fails that row only;
3. waits for the account's daily cap and rate (`limits`);
4. sends it, with `attempt_started_at` committed just before the final "." and the
   row's `sent` committed no later than the connection's next start (so a crash
   leaves at most one row of unknown outcome per connection); both go through the
   batch's `Recorder`, which commits all lanes' writes together;
5. records it: `sent` plus the message on the customer's timeline, or a retry with
   backoff, a failure, a suppression, or an unknown delivery (`outcomes`,
   `domain.retry`).

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
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from mailcrm import wiring
from mailcrm.domain.backoff import Backoff
from mailcrm.domain.messages import make_snippet
from mailcrm.domain.retry import Phase, RetryPolicy, SmtpOutcome
from mailcrm.errors import DatabaseError, ValidationError
from mailcrm.render import TemplateError, TemplateRenderer
from mailcrm.send import compose
from mailcrm.send.checks import SendChecks
from mailcrm.send.claims import Claims
from mailcrm.send.compose import Built, UnsubscribeUrl, mailto_unsubscribe
from mailcrm.send.limits import DailyCap, Stopped, rate_slot, wait
from mailcrm.send.outcomes import Outcomes
from mailcrm.send.recorder import Recorder
from mailcrm.send.sentcopy import SentCopier
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.smtp.errors import SendAborted, SmtpConfigError, SmtpSendError, Utf8NotOffered
from mailcrm.smtp.pool import SmtpPool, SmtpReply
from mailcrm.store import keys, outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail, Prepared, SentRecord
from mailcrm.store.types import utcnow

log = logging.getLogger(__name__)

STOP_GRACE = 6.0
"""Seconds in-flight transactions get to finish after stop (a stopped daemon exits within 10 s)."""


@dataclass
class SendStats:
    """What one batch did (`claimed` = the sum of the others plus rows given back)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    unknown: int = 0
    deferred: int = 0
    released: int = 0

    def add(self, other: SendStats) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def default_worker_id() -> str:
    """host:pid:random: unique per process, readable in `outbox show`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Sender:
    """Sends due outbox rows through each salesperson's SMTP account."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        renderer: TemplateRenderer,
        *,
        worker_id: str | None = None,
        unsubscribe_url: UnsubscribeUrl | None = None,
        rng: random.Random | None = None,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.db = db
        self.settings = settings
        self.renderer = renderer
        self.worker_id = worker_id or default_worker_id()
        self.stop_grace = stop_grace
        sending = settings.sending
        self.policy = RetryPolicy(
            base_seconds=sending.retry_base_seconds,
            max_seconds=sending.retry_max_seconds,
            deadline=sending.retry_deadline,
        )
        self._unsubscribe_url = unsubscribe_url  # the web endpoint's hook, once there is one
        self._unsubscribe_key: bytes | None = None  # read (or made) once, by the first batch
        self._rng = rng or random.Random()
        self._pools: dict[str, SmtpPool] = {}
        self._copier = SentCopier() if sending.copy_to_sent else None
        self._stop = asyncio.Event()
        self._offset = timedelta()
        self._customer_locks: dict[int, asyncio.Lock] = {}
        self._customer_users: dict[int, int] = {}
        self._active = 0  # lanes running: the recorder stops lingering once all wait on it
        self._recorder = Recorder(db, self._now)  # a new one per batch (`send_due`)
        self._checks = SendChecks(db, settings, self._recorder)  # likewise
        self._queues: dict[str | None, deque[ClaimedEmail]] = defaultdict(deque)
        self._lanes: dict[str | None, list[asyncio.Task[None]]] = defaultdict(list)
        self._low = asyncio.Event()  # the queues ran low: claim the next batch
        self._claims = Claims(db, settings, self.worker_id, self._now)
        self._daily_cap = DailyCap(db, self._now)
        self._outcomes = Outcomes(db, settings, self.policy, self._rng, self._now)

    # -- hooks ---------------------------------------------------------------------------

    def unsubscribe_url(self, row: ClaimedEmail) -> str | None:
        """The web unsubscribe link of this email, if a web endpoint gives one (templates show
        it; List-Unsubscribe carries it beside the mailto)."""
        return self._unsubscribe_url(row) if self._unsubscribe_url is not None else None

    def _signing_key(self) -> bytes:
        """The unsubscribe signing key (stored in the database, shared by every daemon)."""
        with self.db.write() as session:
            return keys.signing_key(session)

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
                if stats.claimed >= self.settings.sending.batch_size:
                    continue  # more may be due right now
                await wait(stop, interval)
        finally:
            with contextlib.suppress(DatabaseError):
                await asyncio.to_thread(self._claims.release)
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

        Claims `sending.batch_size` rows; while a full batch is being sent and its
        queue runs low, the next batch is claimed and read in the background, so the
        connections never wait for the database between batches. Returns once no
        more rows are due (or on stop).
        """
        sending = self.settings.sending
        if not sending.enabled:
            return SendStats()
        self._offset = (now - utcnow()) if now is not None else timedelta()
        lease = timedelta(seconds=sending.lease_seconds)
        late = await asyncio.to_thread(self._claims.skip_late)
        rows = await asyncio.to_thread(self._claims.claim, lease)
        stats = SendStats(claimed=len(rows) + late, skipped=late)
        if not rows:
            return stats
        if self._unsubscribe_key is None:
            try:
                self._unsubscribe_key = await asyncio.to_thread(self._signing_key)
            except BaseException:
                await asyncio.to_thread(self._claims.release)
                raise
        recorder = Recorder(self.db, self._now, lanes=lambda: self._active)
        checks = SendChecks(self.db, self.settings, recorder)
        try:
            await checks.load(rows, self._now())
        except BaseException:
            await asyncio.to_thread(self._claims.release)
            raise
        self._recorder, self._checks = recorder, checks
        self._queues = defaultdict(deque)
        self._lanes = defaultdict(list)
        self._low = asyncio.Event()
        self._enqueue(rows, stats)
        refill = asyncio.create_task(self._refill(stats, lease)) if len(rows) >= sending.batch_size else None
        heartbeat = asyncio.create_task(self._claims.renew(lease))
        try:
            async with self._recorder:
                await self._join(refill)
        finally:
            self._customer_locks.clear()
            self._customer_users.clear()
            self._checks = SendChecks(self.db, self.settings, self._recorder)
            self._queues, self._lanes = defaultdict(deque), defaultdict(list)
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # unlike awaiting it, keeps a cancellation of this task
            stats.released += await asyncio.to_thread(self._claims.release)
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

    @property
    def grace(self) -> timedelta:
        """The planning catch-up grace, applied again at send time."""
        return self._claims.grace

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

    def _queued(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def _refill(self, stats: SendStats, lease: timedelta) -> None:
        """Claim the next batch once half of the queued rows are taken; stop when none are due."""
        batch = self.settings.sending.batch_size
        while not self._stop.is_set():
            self._low.clear()
            if self._queued() > batch // 2:
                await self._low.wait()
                continue
            rows = await asyncio.to_thread(self._claims.claim, lease)
            stats.claimed += len(rows)
            if rows:
                await self._checks.add(rows)  # checked when first taken
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
            person = self.settings.salesperson(sender)
            if person is None or person.smtp is None:
                return None
            pool = self._pools[sender] = SmtpPool(person.email, wiring.smtp_params(person.smtp))
        return pool

    # -- one row -----------------------------------------------------------------------------

    async def _lane(self, queue: deque[ClaimedEmail], pool: SmtpPool | None, stats: SendStats) -> None:
        self._active += 1
        try:
            await self._run_lane(queue, pool, stats)
        finally:
            self._active -= 1

    async def _run_lane(self, queue: deque[ClaimedEmail], pool: SmtpPool | None, stats: SendStats) -> None:
        low = self.settings.sending.batch_size // 2
        while queue and not self._stop.is_set():
            row = queue.popleft()
            if len(queue) <= low:
                self._low.set()
            try:
                async with self._customer(row.customer_id):
                    result = await self._process(row, pool)
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
                    "outbox row %s: internal error", row.id, extra={"action": "send_bug", "outbox_id": row.id}
                )
                later = self._now() + timedelta(seconds=self.policy.base_seconds)
                with contextlib.suppress(DatabaseError):
                    await asyncio.to_thread(
                        outbox.defer, self.db, row, later, note=f"internal error: {exc!r}"
                    )
                result = "deferred"
            finally:
                self._checks.forget(row)
            setattr(stats, result, getattr(stats, result) + 1)

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

    async def _process(self, row: ClaimedEmail, pool: SmtpPool | None) -> str:
        """Check, render, send and record one row; returns the SendStats field to count it in."""
        now = self._now()
        late = self._claims.late(row, now)  # claimed by a refill or taken over from a stopped sender
        if late is not None:
            return await self._outcomes.not_sent(row, "skipped", late)
        facts = self._checks.prepared[row.id]
        check = await self._checks.check(row, now)
        refusal = self._checks.refusal(row, facts, check)
        if refusal is not None:
            kind, reason = refusal
            return await self._outcomes.not_sent(row, kind, reason)
        person = self.settings.salesperson(row.sender or "")
        if pool is None or person is None:
            return await self._outcomes.retry(
                row,
                SmtpOutcome(phase=Phase.CONNECT, text=f"no SMTP account is configured for {row.sender}"),
                attempted=False,
            )
        assert self._unsubscribe_key is not None and facts.recipient is not None
        mailto = mailto_unsubscribe(self._unsubscribe_key, row, person.email, facts.recipient)
        try:
            built = compose.build(
                row,
                facts,
                person,
                now,
                renderer=self.renderer,
                settings=self.settings,
                unsubscribe=self.unsubscribe_url(row) or mailto,
                unsubscribe_mailto=mailto,
            )
        except TemplateError as exc:
            return await self._outcomes.fail(row, f"template {row.template}: {exc}", attempted=False)
        except ValidationError as exc:  # HeaderInjectionError included
            return await self._outcomes.fail(row, f"message not built: {exc}", attempted=False)
        if await self._daily_cap.reserve(row, pool, now):
            return "deferred"
        try:
            return await self._deliver(row, pool, person, built, facts)
        finally:
            self._daily_cap.release(row)

    async def _deliver(
        self, row: ClaimedEmail, pool: SmtpPool, person: SalespersonSettings, built: Built, facts: Prepared
    ) -> str:
        """Send one built row over a pooled connection and record the outcome."""
        async with pool.connection() as connection:
            await rate_slot(pool, self._stop)
            paused = pool.paused_for()
            if paused > 0:  # the server refused this account a moment ago: do not hammer it
                until = self._now() + timedelta(seconds=paused)
                await asyncio.to_thread(outbox.defer, self.db, row, until, note=pool.pause_reason)
                return "deferred"
            pool.in_flight += 1
            try:
                try:
                    reply = await connection.send(
                        person.email,
                        [built.recipient],
                        built.payload,
                        before_dot=partial(self._recorder.starting, row),
                    )
                except SendAborted:
                    log.warning(
                        "outbox row %s was taken away before sending; not sent",
                        row.id,
                        extra={"action": "send_aborted", "outbox_id": row.id},
                    )
                    return "released"
                except Utf8NotOffered as exc:  # nothing was sent; this email alone cannot go
                    return await self._outcomes.fail(row, str(exc), attempted=False)
                except SmtpConfigError as exc:
                    return await self._misconfigured(row, pool, exc.outcome)
                except SmtpSendError as exc:
                    if exc.outcome.phase is Phase.CONNECT or exc.outcome.code == 421:
                        pool.pause(self.policy.base_seconds, exc.outcome.describe())
                    return await self._outcomes.failed_attempt(row, exc.outcome, built.recipient)
                self._record_sent(row, built, facts, reply)
            finally:
                pool.in_flight -= 1
        if self._copier is not None:
            self._copier.schedule(person, built.payload, row.message_id)
        return "sent"

    async def _misconfigured(self, row: ClaimedEmail, pool: SmtpPool, outcome: SmtpOutcome) -> str:
        """The account cannot work as configured: pause it for the longest backoff and keep
        the row waiting, unattempted (its retries are not spent on a settings problem)."""
        reason = outcome.describe()
        pause = max(self.policy.max_seconds, self.policy.base_seconds)
        if pool.paused_for() <= 0:
            log.error(
                "SMTP account of %s paused for %.0f s: %s",
                pool.name,
                pause,
                reason,
                extra={"action": "smtp_account_misconfigured", "account": pool.name},
            )
        pool.pause(pause, reason)
        until = self._now() + timedelta(seconds=pause)
        await asyncio.to_thread(outbox.defer, self.db, row, until, note=reason)
        return "deferred"

    def _record_sent(self, row: ClaimedEmail, built: Built, facts: Prepared, reply: SmtpReply) -> None:
        """Queue `sent` (committed before this connection's next start; see `Recorder`)."""
        self._checks.sent(row.customer_id)
        self._recorder.sent(
            SentRecord(
                row=row,
                sender=built.sender.email,
                recipient=built.recipient,
                subject=built.rendered.subject,
                snippet=make_snippet(built.rendered.text),
                thread_key=facts.thread_key or row.message_id,
                at=self._now(),
                code=reply.code,
                reply=reply.text,
            )
        )
