"""One claimed row's path, top to bottom: check, compose, deliver, record.

`RowPath.send` is the whole story of a row once a lane has taken it:

1. check what may have changed since planning (send time, not plan time): a row never
   attempted and due longer ago than the planning grace (the daemon was down) is
   skipped as late (`checks.late`); then the customer's status, suppression, replies
   and frequency cap (`checks.SendChecks`). A refusal is recorded (`outcomes`);
2. compose: render and build the message (`compose`); a template error fails that row only;
3. deliver: wait for the account's daily cap and rate (`limits`), then send over a pooled
   connection, with `attempt_started_at` committed just before the final "."
   (`Recorder.starting`);
4. record, still holding the connection: `sent` (queued to the batch's `Recorder`, which
   commits it no later than the connection's next start) plus the message on the
   customer's timeline, or a retry with backoff, a failure, a suppression, or an
   unknown delivery (`outcomes`, `domain.retry`). Recording before the connection goes
   back to the pool is what leaves at most one row of unknown outcome per connection
   after a crash.

Every step answers with a typed value (`Refusal`, `Built`, `Outcome`); the lane counts
the row's `Outcome`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from mailcrm.domain.messages import make_snippet
from mailcrm.domain.retry import Phase, RetryPolicy, SmtpOutcome
from mailcrm.errors import ValidationError
from mailcrm.render import TemplateError, TemplateRenderer
from mailcrm.send import compose
from mailcrm.send.checks import SendChecks, late
from mailcrm.send.compose import Built, Unsubscribe
from mailcrm.send.config import SenderConfig
from mailcrm.send.limits import DailyCap, rate_slot
from mailcrm.send.outcomes import Outcomes
from mailcrm.send.recorder import Recorder
from mailcrm.send.results import Outcome, Refusal
from mailcrm.send.sentcopy import SentCopier
from mailcrm.settings import SalespersonSettings
from mailcrm.smtp.errors import SendAborted, SmtpConfigError, SmtpSendError, Utf8NotOffered
from mailcrm.smtp.pool import SmtpPool, SmtpReply
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail, Prepared, SentRecord

log = logging.getLogger(__name__)


class RowPath:
    """The steps a batch's rows go through (a new one per batch: it holds the batch's
    send-time facts and group commit)."""

    def __init__(
        self,
        db: Database,
        config: SenderConfig,
        renderer: TemplateRenderer,
        *,
        checks: SendChecks,
        recorder: Recorder,
        outcomes: Outcomes,
        daily_cap: DailyCap,
        policy: RetryPolicy,
        unsubscribe: Unsubscribe,
        copier: SentCopier | None,
        stop: asyncio.Event,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.config = config
        self.renderer = renderer
        self.checks = checks
        self.recorder = recorder
        self.outcomes = outcomes
        self.daily_cap = daily_cap
        self.policy = policy
        self.unsubscribe = unsubscribe
        self.copier = copier
        self.stop = stop
        self._now = clock

    async def send(self, row: ClaimedEmail, pool: SmtpPool | None) -> Outcome:
        """Check, compose, deliver and record one row; returns how it ended."""
        now = self._now()
        refusal = late(row, now, self.config.grace)
        if refusal is not None:
            return await self.outcomes.refused(row, refusal)
        facts = self.checks.prepared[row.id]
        refusal = self.checks.refusal(row, facts, await self.checks.check(row, now))
        if refusal is not None:
            return await self.outcomes.refused(row, refusal)
        person = self.config.salesperson(row.sender)
        if pool is None or person is None:
            outcome = SmtpOutcome(phase=Phase.CONNECT, text=f"no SMTP account is configured for {row.sender}")
            return await self.outcomes.retry(row, outcome, attempted=False)
        built = self.compose(row, facts, person, now)
        if isinstance(built, Refusal):
            return await self.outcomes.refused(row, built)
        if await self.daily_cap.reserve(row, pool, now):
            return Outcome.DEFERRED
        try:
            return await self.deliver(row, pool, person, built, facts)
        finally:
            self.daily_cap.release(row)

    def compose(
        self, row: ClaimedEmail, facts: Prepared, person: SalespersonSettings, now: datetime
    ) -> Built | Refusal:
        """The message to send, or why this row fails (its template or headers are broken)."""
        assert facts.recipient is not None
        shown, mailto = self.unsubscribe.links(row, person.email, facts.recipient)
        try:
            return compose.build(
                row,
                facts,
                person,
                now,
                renderer=self.renderer,
                language=self.config.language,
                timezone=self.config.timezone,
                unsubscribe=shown,
                unsubscribe_mailto=mailto,
            )
        except TemplateError as exc:
            return Refusal(Outcome.FAILED, f"template {row.template}: {exc}")
        except ValidationError as exc:  # HeaderInjectionError included
            return Refusal(Outcome.FAILED, f"message not built: {exc}")

    async def deliver(
        self, row: ClaimedEmail, pool: SmtpPool, person: SalespersonSettings, built: Built, facts: Prepared
    ) -> Outcome:
        """Send one built row over a pooled connection and record the outcome while the
        connection is still this row's (see the module docstring)."""
        async with pool.connection() as connection:
            await rate_slot(pool, self.stop)
            paused = pool.paused_for()
            if paused > 0:  # the server refused this account a moment ago: do not hammer it
                until = self._now() + timedelta(seconds=paused)
                await asyncio.to_thread(outbox.defer, self.db, row, until, note=pool.pause_reason)
                return Outcome.DEFERRED
            pool.in_flight += 1
            try:
                try:
                    reply = await connection.send(
                        person.email,
                        [built.recipient],
                        built.payload,
                        before_dot=partial(self.recorder.starting, row),
                    )
                except SendAborted:
                    log.warning(
                        "outbox row %s was taken away before sending; not sent",
                        row.id,
                        extra={"action": "send_aborted", "outbox_id": row.id},
                    )
                    return Outcome.RELEASED
                except Utf8NotOffered as exc:  # nothing was sent; this email alone cannot go
                    return await self.outcomes.fail(row, str(exc), attempted=False)
                except SmtpConfigError as exc:
                    return await self.misconfigured(row, pool, exc.outcome)
                except SmtpSendError as exc:
                    if exc.outcome.phase is Phase.CONNECT or exc.outcome.code == 421:
                        pool.pause(self.policy.base_seconds, exc.outcome.describe())
                    return await self.outcomes.failed_attempt(row, exc.outcome, built.recipient)
                self.record_sent(row, built, facts, reply)
            finally:
                pool.in_flight -= 1
        if self.copier is not None:
            self.copier.schedule(person, built.payload, row.message_id)
        return Outcome.SENT

    async def misconfigured(self, row: ClaimedEmail, pool: SmtpPool, outcome: SmtpOutcome) -> Outcome:
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
        return Outcome.DEFERRED

    def record_sent(self, row: ClaimedEmail, built: Built, facts: Prepared, reply: SmtpReply) -> None:
        """Queue `sent` (committed before this connection's next start; see `Recorder`)."""
        self.checks.sent(row.customer_id)
        self.recorder.sent(
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
