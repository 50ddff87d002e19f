"""The sender: claim due outbox rows, check them again, render, send, record the outcome.

Per batch: `claim` a lease on up to `sending.batch_size` due rows, read their
template data and send-time facts set-based (`outbox.prepare`, `outbox.send_checks`),
then run one lane per pooled SMTP connection of each sending account. A lane takes
the next row and

1. checks what may have changed since planning (send time, not plan time): a row
   never attempted and due longer ago than `planning.grace_hours` (the daemon was
   down) is skipped as late, as the planner does with such occurrences; archived
   customer, suppressed address, a reply that makes a follow-up moot, the
   per-customer frequency cap (facts older than `CHECK_MAX_AGE` are read again);
2. renders the template (customer language → owner language → default → en); a
   template error fails that row only;
3. builds the message with the Message-ID fixed at planning, threading headers for
   follow-ups, and List-Unsubscribe: the web endpoint when `web.base_url` is set,
   else a mailto: to the sender (no email goes out without a way to stop the next);
4. sends it, with `attempt_started_at` committed just before the final "." and the
   row's `sent` committed no later than the connection's next start (so a crash
   leaves at most one row of unknown outcome per connection); both go through the
   batch's `Recorder`, which commits all lanes' writes together;
5. records it: `sent` plus the message on the customer's timeline, or a retry with
   backoff, a failure, a suppression, or an unknown delivery (`domain.retry`); every
   attempt, with the server's reply code and text, goes into the row's history. An
   unknown user is suppressed at once; a full mailbox only after
   `sending.soft_bounce_limit` soft bounces within `sending.soft_bounce_window`
   (counted from that history), since it usually empties again.

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
import hashlib
import logging
import os
import random
import secrets
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from mailcrm.domain.backoff import Backoff
from mailcrm.domain.messages import make_snippet
from mailcrm.domain.mime import Address, build_message
from mailcrm.domain.retry import (
    SEND_SLACK,
    Phase,
    RetryPolicy,
    SmtpOutcome,
    Verdict,
    after_ambiguous,
    classify,
    deadline_for,
    enhanced_status,
    ever_attempted,
    is_soft_bounce,
    late_reason,
    next_attempt,
    too_many_soft,
)
from mailcrm.domain.rules import format_duration
from mailcrm.errors import DatabaseError, ValidationError
from mailcrm.render import RenderedEmail, TemplateError, TemplateRenderer, template_context
from mailcrm.send.recorder import Recorder
from mailcrm.send.sentcopy import SentCopier
from mailcrm.send.smtp import SendAborted, SmtpPool, SmtpReply, SmtpSendError
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import CustomerStatus
from mailcrm.store.outbox import ClaimedEmail, Prepared, SendCheck, SentRecord
from mailcrm.store.types import utcnow

log = logging.getLogger(__name__)

STOP_GRACE = 6.0
"""Seconds in-flight transactions get to finish after stop (D5: the process exits within 10 s)."""

DAILY_WINDOW = timedelta(hours=24)
CHECK_MAX_AGE = 2.0
"""Seconds a batch's send-time facts stay fresh; a row checked later reads its own again."""
AUTO_SUBMITTED = {"Auto-Submitted": "auto-generated"}  # RFC 3834 §5: spares us out-of-office replies

UnsubscribeUrl = Callable[[ClaimedEmail], "str | None"]
_WEB = ("https://", "http://")


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


@dataclass(frozen=True, slots=True)
class _Built:
    payload: bytes
    rendered: RenderedEmail
    sender: SalespersonSettings
    recipient: str


class _Stopped(Exception):
    """Stop was requested before the row's SMTP transaction began."""


def default_worker_id() -> str:
    """host:pid:random: unique per process, readable in `outbox show`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def placeholder_unsubscribe_url(base_url: str | None) -> UnsubscribeUrl:
    """`<base_url>/u/<token>` (the web endpoint replaces this hook with signed tokens), or
    without `web.base_url` a mailto: to the sender asking to unsubscribe, so no email goes
    out without a way to stop the next one."""
    base = base_url.rstrip("/") if base_url else None

    def url(row: ClaimedEmail) -> str | None:
        if base is None:
            return mailto_unsubscribe(row.sender) if row.sender else None
        token = hashlib.sha256(row.message_id.encode()).hexdigest()[:32]
        return f"{base}/u/{token}"

    return url


def mailto_unsubscribe(sender: str) -> str:
    """The RFC 2369 mailto: form: a reply the salesperson sees in their own mailbox."""
    return f"mailto:{sender}?subject=unsubscribe"


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
        self._unsubscribe_url = unsubscribe_url or placeholder_unsubscribe_url(settings.web.base_url)
        self._rng = rng or random.Random()
        self._pools: dict[str, SmtpPool] = {}
        self._copier = SentCopier() if sending.copy_to_sent else None
        self._stop = asyncio.Event()
        self._offset = timedelta()
        self._customer_locks: dict[int, asyncio.Lock] = {}
        self._customer_users: dict[int, int] = {}
        self._prepared: dict[int, Prepared] = {}
        self._checks: dict[int, SendCheck] = {}
        self._checked_at = 0.0  # loop time of `_checks`
        self._unchecked: dict[int, ClaimedEmail] = {}  # claimed rows no lane has taken yet
        self._refreshing = asyncio.Lock()
        self._sent_to: dict[int, list[float]] = defaultdict(list)  # customer → loop times sent this batch
        self._active = 0  # lanes running: the recorder stops lingering once all wait on it
        self._recorder = Recorder(db, self._now)  # a new one per batch (`send_due`)
        self._queues: dict[str | None, deque[ClaimedEmail]] = defaultdict(deque)
        self._lanes: dict[str | None, list[asyncio.Task[None]]] = defaultdict(list)
        self._low = asyncio.Event()  # the queues ran low: claim the next batch
        self._reserved: dict[str, set[int]] = defaultdict(set)  # sender → rows holding a daily-cap slot
        self._cap_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- hooks ---------------------------------------------------------------------------

    def unsubscribe_url(self, row: ClaimedEmail) -> str | None:
        """The unsubscribe link of this email (templates show it; List-Unsubscribe carries it)."""
        return self._unsubscribe_url(row)

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
                    await _wait(stop, delay)
                    continue
                if stats.claimed >= self.settings.sending.batch_size:
                    continue  # more may be due right now
                await _wait(stop, interval)
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

    def _release(self) -> int:
        return outbox.release(self.db, self.worker_id, self._now(), ambiguous=self.settings.sending.ambiguous)

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
        late = await asyncio.to_thread(self._skip_late)
        rows = await asyncio.to_thread(self._claim, lease)
        stats = SendStats(claimed=len(rows) + late, skipped=late)
        if not rows:
            return stats
        try:
            self._prepared, self._checks = await asyncio.to_thread(self._prepare, rows, self._now())
        except BaseException:
            await asyncio.to_thread(self._release)
            raise
        self._checked_at = asyncio.get_running_loop().time()
        self._unchecked = {row.id: row for row in rows}
        self._refreshing = asyncio.Lock()
        self._recorder = Recorder(self.db, self._now, lanes=lambda: self._active)
        self._queues = defaultdict(deque)
        self._lanes = defaultdict(list)
        self._low = asyncio.Event()
        self._enqueue(rows, stats)
        refill = asyncio.create_task(self._refill(stats, lease)) if len(rows) >= sending.batch_size else None
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            async with self._recorder:
                await self._join(refill)
        finally:
            self._customer_locks.clear()
            self._customer_users.clear()
            self._prepared, self._checks, self._unchecked = {}, {}, {}
            self._queues, self._lanes = defaultdict(deque), defaultdict(list)
            self._sent_to.clear()
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # unlike awaiting it, keeps a cancellation of this task
            stats.released += await asyncio.to_thread(self._release)
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
        return timedelta(hours=self.settings.planning.grace_hours)

    def _late(self, row: ClaimedEmail, now: datetime) -> str | None:
        attempted = ever_attempted(row.attempts, row.deadline_at, row.ambiguous_attempts)
        return late_reason(row.due_at, now, self.grace, attempted=attempted)

    def _skip_late(self) -> int:
        """Skip, set-based, the due rows a restart finds too late to send (see `_late`)."""
        now, grace = self._now(), self.grace
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

    def _claim(self, lease: timedelta) -> list[ClaimedEmail]:
        sending = self.settings.sending
        return outbox.claim(
            self.db, self.worker_id, sending.batch_size, lease, self._now(), ambiguous=sending.ambiguous
        )

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
            rows = await asyncio.to_thread(self._claim, lease)
            stats.claimed += len(rows)
            if rows:
                prepared = await asyncio.to_thread(self._prepare_only, rows)
                self._prepared.update(prepared)
                self._unchecked.update((row.id, row) for row in rows)  # checked when first taken
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

    async def _heartbeat(self, lease: timedelta) -> None:
        """Renew the claims while the batch runs, so nobody takes over live work."""
        period = max(lease.total_seconds() / 3, 0.2)
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(outbox.extend_lease, self.db, self.worker_id, self._now() + lease)
            except DatabaseError as exc:
                log.warning("could not renew claims: %s", exc, extra={"action": "lease_renew_failed"})

    def _pool(self, sender: str | None) -> SmtpPool | None:
        if sender is None:
            return None
        pool = self._pools.get(sender)
        if pool is None:
            person = self.settings.salesperson(sender)
            if person is None or person.smtp is None:
                return None
            pool = self._pools[sender] = SmtpPool(person.email, person.smtp)
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
            except _Stopped:
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
                self._prepared.pop(row.id, None)  # a long run must not keep every row in memory
                self._checks.pop(row.id, None)
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
        late = self._late(row, now)  # claimed by a refill or taken over from a stopped sender
        if late is not None:
            return await self._not_sent(row, "skipped", late)
        facts = self._prepared[row.id]
        check = await self._check(row, facts, now)
        refusal = self._refusal(row, facts, check)
        if refusal is not None:
            kind, reason = refusal
            return await self._not_sent(row, kind, reason)
        person = self.settings.salesperson(row.sender or "")
        if pool is None or person is None:
            return await self._retry(
                row,
                SmtpOutcome(phase=Phase.CONNECT, text=f"no SMTP account is configured for {row.sender}"),
                attempted=False,
            )
        try:
            built = self._build(row, facts, person, now)  # ~0.1 ms: cheaper here than a thread hop
        except TemplateError as exc:
            return await self._fail(row, f"template {row.template}: {exc}", attempted=False)
        except ValidationError as exc:  # HeaderInjectionError included
            return await self._fail(row, f"message not built: {exc}", attempted=False)
        if await self._daily_cap(row, pool, now):
            return "deferred"
        try:
            return await self._deliver(row, pool, person, built, facts)
        finally:
            self._unreserve(row)

    async def _deliver(
        self, row: ClaimedEmail, pool: SmtpPool, person: SalespersonSettings, built: _Built, facts: Prepared
    ) -> str:
        """Send one built row over a pooled connection and record the outcome."""
        async with pool.connection() as connection:
            await self._rate_slot(pool)
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
                except SmtpSendError as exc:
                    if exc.outcome.phase is Phase.CONNECT or exc.outcome.code == 421:
                        pool.pause(self.policy.base_seconds, exc.outcome.describe())
                    return await self._failed_attempt(row, exc.outcome, built.recipient)
                self._record_sent(row, built, facts, reply)
            finally:
                pool.in_flight -= 1
        if self._copier is not None:
            self._copier.schedule(person, built.payload, row.message_id)
        return "sent"

    def _prepare_only(self, rows: list[ClaimedEmail]) -> dict[int, Prepared]:
        with self.db.read() as session:
            return outbox.prepare(session, rows)

    def _prepare(
        self, rows: list[ClaimedEmail], now: datetime
    ) -> tuple[dict[int, Prepared], dict[int, SendCheck]]:
        window = self.settings.sending.frequency_window
        with self.db.read() as session:
            prepared = outbox.prepare(session, rows)
            return prepared, outbox.send_checks(session, rows, prepared, now, window)

    async def _check(self, row: ClaimedEmail, facts: Prepared, now: datetime) -> SendCheck:
        """The row's send-time facts: read with its batch, or again (with every row still
        queued) when older than `CHECK_MAX_AGE` or claimed by a refill.

        Sends of this run after the read count towards the frequency cap (the
        customer lock orders a customer's rows; `_refresh_checks` reads while the
        recorder is quiet, so no send is counted twice or missed).
        """
        loop = asyncio.get_running_loop()
        self._unchecked.pop(row.id, None)
        if row.id not in self._checks or loop.time() - self._checked_at > CHECK_MAX_AGE:
            async with self._refreshing:
                if row.id not in self._checks or loop.time() - self._checked_at > CHECK_MAX_AGE:
                    await self._refresh_checks([row, *self._unchecked.values()], now)
        check = self._checks[row.id]
        later = sum(1 for at in self._sent_to.get(row.customer_id, ()) if at >= self._checked_at)
        if later:
            check = replace(check, recent_sends=check.recent_sends + later)
        return check

    async def _refresh_checks(self, rows: list[ClaimedEmail], now: datetime) -> None:
        """Read the facts of the rows still to send again, in one go (the batch ran long)."""
        window = self.settings.sending.frequency_window
        prepared = {row.id: self._prepared[row.id] for row in rows}

        def read() -> dict[int, SendCheck]:
            with self.db.read() as session:
                return outbox.send_checks(session, rows, prepared, now, window)

        async with self._recorder.quiet():  # the sends counted in memory are exactly the later ones
            self._checked_at = since = asyncio.get_running_loop().time()
            self._checks = await asyncio.to_thread(read)
        self._sent_to = defaultdict(
            list, {c: ts for c, t in self._sent_to.items() if (ts := [a for a in t if a >= since])}
        )

    def _refusal(self, row: ClaimedEmail, facts: Prepared, check: SendCheck) -> tuple[str, str] | None:
        """Why this row must not be sent now: (stats field, reason), or None."""
        if facts.customer is None or check.status is None:
            return "failed", "the customer no longer exists"
        if check.status == CustomerStatus.ARCHIVED.value:
            return "skipped", "archived: the customer is archived"
        if row.is_followup and check.replied:
            return "cancelled", "replied: the customer answered the email this follows up"
        if facts.recipient is None:
            return "failed", "the customer has no email address"
        if check.suppressed is not None:
            return "skipped", f"suppressed: {facts.recipient} ({check.suppressed})"
        cap = self.settings.sending.frequency_cap
        if cap is not None and check.recent_sends >= cap:
            window = format_duration(self.settings.sending.frequency_window)
            return "skipped", f"frequency_cap: {check.recent_sends} automated emails in the last {window}"
        if row.sender is None:
            return "failed", "no sender: the rule names none and the customer has no owner"
        return None

    def _languages(self, facts: Prepared, person: SalespersonSettings) -> list[str]:
        chain = [
            facts.customer.language if facts.customer else None,
            person.language,
            self.settings.defaults.language,
            "en",
        ]
        return list(dict.fromkeys(lang for lang in chain if lang))

    def _build(
        self, row: ClaimedEmail, facts: Prepared, person: SalespersonSettings, now: datetime
    ) -> _Built:
        """Render and build the message (runs in a worker thread: both are CPU work)."""
        customer = facts.customer
        assert customer is not None and facts.recipient is not None
        unsubscribe = self.unsubscribe_url(row)
        extra = {"previous_subject": facts.previous_subject} if row.in_reply_to else None
        context = template_context(
            customer=customer.model_dump(),
            salesperson=person.model_dump(include={"name", "email", "language", "timezone"}),
            purchase=facts.purchase,
            extra=extra,
            unsubscribe_url=unsubscribe,
        )
        rendered = self.renderer.render(
            row.template,
            languages=self._languages(facts, person),
            context=context,
            timezone=customer.timezone or self.settings.defaults.timezone,
        )
        payload = build_message(
            sender=Address(person.email, person.name),
            to=Address(facts.recipient, customer.name),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=row.message_id,
            date=now,
            in_reply_to=row.in_reply_to,
            references=facts.references,
            list_unsubscribe_url=unsubscribe if unsubscribe and unsubscribe.startswith(_WEB) else None,
            list_unsubscribe_mailto=mailto_unsubscribe(person.email),
            extra_headers=AUTO_SUBMITTED,
        )
        return _Built(payload=payload, rendered=rendered, sender=person, recipient=facts.recipient)

    async def _daily_cap(self, row: ClaimedEmail, pool: SmtpPool, now: datetime) -> bool:
        """Reserve one of the account's `per_day` emails for the row (rolling 24 h), or defer it.

        True: deferred. False: the row may go; with a cap it holds a reservation,
        given back by `_unreserve` once its outcome is recorded. The check and the
        reservation happen under one lock per account, and the count leaves out the
        rows this process holds in memory (reserved: counted there), so concurrent
        lanes of a process never pass the cap together. Other processes' rows count
        from the database once started; `processes.share` covers the rest.
        """
        per_day = pool.account.per_day
        if per_day is None or row.sender is None:
            return False
        reserved = self._reserved[row.sender]
        async with self._cap_locks[row.sender]:
            held = set(reserved)  # released meanwhile: still counted (sent, or rarely a retry)
            count, oldest = await asyncio.to_thread(
                partial(outbox.sent_since, self.db, row.sender, now - DAILY_WINDOW, exclude=held)
            )
            if count + len(held) < per_day:
                reserved.add(row.id)
                return False
        until = (oldest or now) + DAILY_WINDOW
        await asyncio.to_thread(outbox.defer, self.db, row, until, now=self._now())
        log.info(
            "daily cap of %s reached for %s; outbox row %s waits until %s",
            per_day,
            row.sender,
            row.id,
            until.isoformat(),
            extra={"action": "send_deferred", "outbox_id": row.id, "sender": row.sender},
        )
        return True

    def _unreserve(self, row: ClaimedEmail) -> None:
        """Give back the row's daily-cap reservation: its outcome is in the database or
        queued to it (a queued `sent` is a started row, which `sent_since` counts)."""
        if row.sender is not None:
            self._reserved[row.sender].discard(row.id)

    async def _rate_slot(self, pool: SmtpPool) -> None:
        delay = pool.limiter.reserve()
        if delay > 0 and await _wait(self._stop, delay):
            raise _Stopped
        if self._stop.is_set():
            raise _Stopped

    # -- outcomes -------------------------------------------------------------------------

    def _record_sent(self, row: ClaimedEmail, built: _Built, facts: Prepared, reply: SmtpReply) -> None:
        """Queue `sent` (committed before this connection's next start; see `Recorder`)."""
        self._sent_to[row.customer_id].append(asyncio.get_running_loop().time())
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

    async def _not_sent(self, row: ClaimedEmail, kind: str, reason: str) -> str:
        if kind == "failed":
            return await self._fail(row, reason, attempted=False)
        await asyncio.to_thread(
            outbox.mark_skipped, self.db, row, reason, cancelled=kind == "cancelled", now=self._now()
        )
        log.info(
            "outbox row %s %s: %s",
            row.id,
            kind,
            reason,
            extra={"action": f"send_{kind}", "outbox_id": row.id, "rule": row.rule},
        )
        return kind

    async def _fail(
        self,
        row: ClaimedEmail,
        error: str,
        *,
        attempted: bool = True,
        reply: SmtpOutcome | None = None,
        kind: str = outbox.ATTEMPT_FAILED,
        notify: bool = False,
    ) -> str:
        """`failed`; `reply` (the attempt's outcome) goes into the row's history.

        `notify`: the row was given up on after retrying (no person saw the retries), so
        its owner is told on the customer's timeline and in a warning naming them.
        """
        salesperson = row.sender or "(no salesperson)"
        changed = await asyncio.to_thread(
            partial(
                outbox.mark_failed,
                self.db,
                row,
                error,
                attempted=attempted,
                now=self._now(),
                outcome=kind,
                code=reply.code if reply else None,
                reply=_reply_text(reply),
                notify=salesperson if notify else None,
            )
        )
        extra = {
            "action": "send_failed",
            "outbox_id": row.id,
            "rule": row.rule,
            "customer_id": row.customer_id,
            "salesperson": row.sender,
        }
        if notify and changed:
            log.warning(
                "gave up on outbox row %s (rule %s) to customer %s; salesperson %s is told: %s",
                row.id,
                row.rule,
                row.customer_id,
                salesperson,
                error,
                extra={**extra, "action": "send_given_up"},
            )
        else:
            log.warning(
                "outbox row %s (rule %s, customer %s, salesperson %s) failed: %s",
                row.id,
                row.rule,
                row.customer_id,
                salesperson,
                error,
                extra=extra,
            )
        return "failed"

    async def _retry(
        self, row: ClaimedEmail, outcome: SmtpOutcome, *, attempted: bool = True, ambiguous: bool = False
    ) -> str:
        """Back to `due` after a backoff, or `failed(expired)` once past the row's deadline."""
        now = self._now()
        reason = outcome.describe()
        deadline = deadline_for(self.policy, now, row.deadline_at)
        at = next_attempt(self.policy, row.attempts + 1, now, deadline, self._rng)
        if at is None:
            return await self._fail(
                row,
                f"expired: no delivery before {deadline.isoformat()}; last: {reason}",
                attempted=attempted,
                reply=outcome,
                notify=True,
            )
        await asyncio.to_thread(
            partial(
                outbox.mark_retry,
                self.db,
                row,
                reason,
                at,
                deadline=deadline,
                attempted=attempted,
                ambiguous=ambiguous,
                now=now,
                code=outcome.code,
                reply=_reply_text(outcome),
            )
        )
        log.warning(
            "outbox row %s will be retried at %s: %s",
            row.id,
            at.isoformat(),
            reason,
            extra={"action": "send_retry", "outbox_id": row.id, "code": outcome.code},
        )
        return "retried"

    async def _failed_attempt(self, row: ClaimedEmail, outcome: SmtpOutcome, recipient: str) -> str:
        """Act on the classification of a failed attempt (see `domain.retry`)."""
        decision = classify(outcome)
        if decision.verdict is Verdict.RETRY:
            if is_soft_bounce(outcome.code, outcome.text):
                softs = await asyncio.to_thread(self._soft_bounces, row)
                if too_many_soft(softs + 1, self.settings.sending.soft_bounce_limit):  # + this one
                    window = format_duration(self.settings.sending.soft_bounce_window)
                    detail = f"{softs + 1} soft bounces in {window}; last: {decision.reason}"
                    await asyncio.to_thread(self._suppress, row, recipient, outcome, "soft_bounce", detail)
                    return await self._fail(
                        row, f"suppressed: {detail}", reply=outcome, kind=outbox.ATTEMPT_SUPPRESSED
                    )
            return await self._retry(row, outcome)
        if decision.verdict is Verdict.AMBIGUOUS:
            if after_ambiguous(self.settings.sending.ambiguous, row.ambiguous_attempts) is Verdict.RETRY:
                return await self._retry(row, outcome, ambiguous=True)
            await asyncio.to_thread(
                partial(
                    outbox.mark_unknown,
                    self.db,
                    row,
                    decision.reason,
                    now=self._now(),
                    code=outcome.code,
                    reply=_reply_text(outcome),
                )
            )
            log.warning(
                "outbox row %s: delivery unknown: %s",
                row.id,
                decision.reason,
                extra={"action": "send_unknown", "outbox_id": row.id},
            )
            return "unknown"
        if decision.verdict is Verdict.SUPPRESS:
            await asyncio.to_thread(self._suppress, row, recipient, outcome)
            return await self._fail(row, decision.reason, reply=outcome, kind=outbox.ATTEMPT_SUPPRESSED)
        return await self._fail(row, decision.reason, reply=outcome)

    def _soft_bounces(self, row: ClaimedEmail) -> int:
        """Soft bounces of the customer inside `sending.soft_bounce_window`, from the history."""
        since = self._now() - self.settings.sending.soft_bounce_window
        return outbox.soft_bounces(self.db, row.customer_id, since, is_soft_bounce)

    def _suppress(
        self,
        row: ClaimedEmail,
        recipient: str,
        outcome: SmtpOutcome,
        reason: str = "hard_bounce",
        detail: str | None = None,
    ) -> None:
        with self.db.write() as session:
            added = outbox.suppress(
                session,
                recipient,
                reason,
                detail=detail or outcome.describe(),
                customer_id=row.customer_id,
                status=enhanced_status(outcome.text),
                message_id=row.message_id,
            )
        if added:
            why = "the server says it does not exist" if reason == "hard_bounce" else detail
            log.warning(
                "%s suppressed: %s (%s)",
                recipient,
                why,
                enhanced_status(outcome.text),
                extra={"action": "address_suppressed", "reason": reason, "customer_id": row.customer_id},
            )


def _reply_text(outcome: SmtpOutcome | None) -> str | None:
    """The history's reply column: the server's text, else what happened (no reply came)."""
    if outcome is None:
        return None
    return outcome.describe() if outcome.code is None else outcome.text


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        return False
    return True
