"""Recording why a row was not sent: skipped, failed, retried, suppressed or unknown.

Every attempt, with the server's reply code and text and the bounce reason it names
(`domain.bounce_reasons`), goes into the row's history. An unknown user is suppressed
at once; a full mailbox only after `sending.soft_bounce_limit` soft bounces within
`sending.soft_bounce_window` (counted from that history and the delivery reports sync
found), since it usually empties again. A refusal caused by the sender's own setup
(SPF/DKIM/DMARC, a blocklist) fails the row without touching the customer's address,
and is recorded once per cause as a sender issue with one WARNING for the salesperson.
A row given up on after retrying is announced to its owner, since no person saw the
retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from functools import partial

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.delivery_reports import sender_domain, sender_issue_line
from mailcrm.domain.retry import (
    Decision,
    RetryPolicy,
    SmtpOutcome,
    Verdict,
    after_ambiguous,
    bounce_reason,
    classify,
    deadline_for,
    enhanced_status,
    is_soft_bounce,
    next_attempt,
    too_many_soft,
)
from mailcrm.domain.rules import format_duration
from mailcrm.send.results import Outcome, Refusal
from mailcrm.settings import SendingSettings
from mailcrm.store import outbox, sender_issues
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail

log = logging.getLogger(__name__)


class Outcomes:
    """Writes a row's unsent outcome; each method returns the `Outcome` to count it as."""

    def __init__(
        self,
        db: Database,
        sending: SendingSettings,
        policy: RetryPolicy,
        rng: random.Random,
        now: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.sending = sending
        self.policy = policy
        self._rng = rng
        self._now = now

    async def refused(self, row: ClaimedEmail, refusal: Refusal) -> Outcome:
        """A send-time check refused the row: failed, skipped or cancelled."""
        kind, reason = refusal.outcome, refusal.reason
        if kind is Outcome.FAILED:
            return await self.fail(row, reason, attempted=False)
        cancelled = kind is Outcome.CANCELLED
        await asyncio.to_thread(
            outbox.mark_skipped, self.db, row, reason, cancelled=cancelled, now=self._now()
        )
        log.info(
            "outbox row %s %s: %s",
            row.id,
            kind.value,
            reason,
            extra={"action": f"send_{kind.value}", "outbox_id": row.id, "rule": row.rule},
        )
        return kind

    async def fail(
        self,
        row: ClaimedEmail,
        error: str,
        *,
        attempted: bool = True,
        reply: SmtpOutcome | None = None,
        kind: str = outbox.ATTEMPT_FAILED,
        notify: bool = False,
        bounce: BounceReason | None = None,
        sender_side: bool = False,
    ) -> Outcome:
        """`failed`; `reply` (the attempt's outcome) goes into the row's history with
        its bounce reason (`bounce`, else the one `reply` names).

        `notify`: the row was given up on (after retrying, or refused for a cause on the
        sender's side, `sender_side`) and no person saw it, so its owner is told on the
        customer's timeline and in a warning naming them.
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
                reply=reply_text(reply),
                notify=salesperson if notify else None,
                reason=_reason_value(bounce, reply),
                sender_side=sender_side,
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
        return Outcome.FAILED

    async def retry(
        self, row: ClaimedEmail, outcome: SmtpOutcome, *, attempted: bool = True, ambiguous: bool = False
    ) -> Outcome:
        """Back to `due` after a backoff, or `failed(expired)` once past the row's deadline."""
        now = self._now()
        reason = outcome.describe()
        deadline = deadline_for(self.policy, now, row.deadline_at)
        at = next_attempt(self.policy, row.attempts + 1, now, deadline, self._rng)
        if at is None:
            return await self.fail(
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
                reply=reply_text(outcome),
                reason=_reason_value(None, outcome) if attempted else None,
            )
        )
        log.warning(
            "outbox row %s will be retried at %s: %s",
            row.id,
            at.isoformat(),
            reason,
            extra={"action": "send_retry", "outbox_id": row.id, "code": outcome.code},
        )
        return Outcome.RETRIED

    async def failed_attempt(self, row: ClaimedEmail, outcome: SmtpOutcome, recipient: str) -> Outcome:
        """Act on the classification of a failed attempt (see `domain.retry`)."""
        decision = classify(outcome)
        if decision.sender_side:
            await asyncio.to_thread(self.sender_issue, row, recipient, outcome, decision)
        if decision.verdict is Verdict.RETRY:
            if is_soft_bounce(outcome.code, outcome.text):
                softs = await asyncio.to_thread(self.soft_bounces, row)
                if too_many_soft(softs + 1, self.sending.soft_bounce_limit):  # + this one
                    window = format_duration(self.sending.soft_bounce_window)
                    detail = f"{softs + 1} soft bounces in {window}; last: {decision.reason}"
                    await asyncio.to_thread(self.suppress, row, recipient, outcome, "soft_bounce", detail)
                    return await self.fail(
                        row, f"suppressed: {detail}", reply=outcome, kind=outbox.ATTEMPT_SUPPRESSED
                    )
            return await self.retry(row, outcome)
        if decision.verdict is Verdict.AMBIGUOUS:
            if after_ambiguous(self.sending.ambiguous, row.ambiguous_attempts) is Verdict.RETRY:
                return await self.retry(row, outcome, ambiguous=True)
            await asyncio.to_thread(
                partial(
                    outbox.mark_unknown,
                    self.db,
                    row,
                    decision.reason,
                    now=self._now(),
                    code=outcome.code,
                    reply=reply_text(outcome),
                )
            )
            log.warning(
                "outbox row %s: delivery unknown: %s",
                row.id,
                decision.reason,
                extra={"action": "send_unknown", "outbox_id": row.id},
            )
            return Outcome.UNKNOWN
        if decision.verdict is Verdict.SUPPRESS:
            await asyncio.to_thread(self.suppress, row, recipient, outcome)
            return await self.fail(row, decision.reason, reply=outcome, kind=outbox.ATTEMPT_SUPPRESSED)
        if decision.sender_side:  # the customer's address is fine: tell the salesperson
            return await self.fail(row, decision.reason, reply=outcome, notify=True, sender_side=True)
        return await self.fail(row, decision.reason, reply=outcome)

    def sender_issue(
        self, row: ClaimedEmail, recipient: str, outcome: SmtpOutcome, decision: Decision
    ) -> None:
        """Count a refusal caused by the sender's setup; the first of its kind logs one WARNING."""
        assert decision.bounce is not None
        sending = sender_domain(row.sender)
        receiving = sender_domain(recipient)
        status = enhanced_status(outcome.text) or (str(outcome.code) if outcome.code else None)
        evidence = reply_text(outcome)
        with self.db.write() as session:
            first = sender_issues.record(
                session,
                sender_domain=sending,
                cause=decision.bounce.value,
                receiving_domain=receiving,
                salesperson=row.sender,
                status=status,
                detail=f"{outcome.code} {evidence}" if outcome.code else evidence,
                at=self._now(),
            )
        if first:
            line = sender_issue_line(sending, decision.bounce, receiving, f"{outcome.code} {outcome.text}")
            log.warning(
                "%s",
                line,
                extra={"action": "sender_issue", "salesperson": row.sender, "reason": decision.bounce.value},
            )

    def soft_bounces(self, row: ClaimedEmail) -> int:
        """Soft bounces of the customer inside `sending.soft_bounce_window`, from the history."""
        since = self._now() - self.sending.soft_bounce_window
        return outbox.soft_bounces(self.db, row.customer_id, since)

    def suppress(
        self,
        row: ClaimedEmail,
        recipient: str,
        outcome: SmtpOutcome,
        reason: str = "hard_bounce",
        detail: str | None = None,
    ) -> None:
        """Add the recipient to the suppression list (blocking: run it in a thread)."""
        with self.db.write() as session:
            added = outbox.suppress(
                session,
                recipient,
                reason,
                detail=detail or outcome.describe(),
                customer_id=row.customer_id,
                status=enhanced_status(outcome.text),
                message_id=row.message_id,
                bounce_reason=_reason_value(None, outcome),
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


def _reason_value(bounce: BounceReason | None, outcome: SmtpOutcome | None) -> str | None:
    """The history's reason column: the decided reason, else the one the reply names."""
    if bounce is not None:
        return bounce.value
    if outcome is None:
        return None
    found = bounce_reason(outcome.code, outcome.text)
    return found.value if found is not None else None


def reply_text(outcome: SmtpOutcome | None) -> str | None:
    """The history's reply column: the server's text, else what happened (no reply came)."""
    if outcome is None:
        return None
    return outcome.describe() if outcome.code is None else outcome.text
