"""What a failed SMTP attempt means, and when to try again: a value in, a decision out.

The SMTP shell (`send/smtp.py`) turns aiosmtplib's exceptions into an `SmtpOutcome`
(where in the session it happened, the reply code and text); this module decides:

* `retry`: a 4xx reply, or a connection, TLS or login problem before the final "."
  of DATA: nothing was delivered, so trying again is safe;
* `failed`: a 5xx reply about this message (no retry can help);
* `suppress`: a 5xx reply whose reason (`domain.bounce_reasons.reason_of`, the one
  vocabulary of sync and sending) is a permanent recipient failure (`SUPPRESSING`: user
  or host unknown, moved, disabled): fail the row *and* never write to the address again.
  A failure caused by the sender's own setup (`SENDER_SIDE`: SPF/DKIM/DMARC, blocklists)
  fails the row and leaves the customer's address alone;
* `ambiguous`: the connection was lost after the final "." was sent and before the
  reply arrived. The server may hold the message (RFC 5321 §6.1 "synchronization
  gap"), so a resend may duplicate it.

Retries back off exponentially with jitter (`domain.backoff`) until a deadline; past
it the row fails as expired with the last reply.

Two more decisions are taken here: whether a row that was never attempted is too late
to go out at all (`late_reason`: a daemon that was down must not send a birthday card
days later), and which replies are soft bounces (`is_soft_bounce`: a full mailbox is
retried, and the address is suppressed only after repeated ones, `too_many_soft`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from mailcrm.domain.backoff import Backoff
from mailcrm.domain.bounce_reasons import BounceReason, is_sender_side, reason_of, suppresses
from mailcrm.domain.calendar import catch_up
from mailcrm.domain.rules import format_duration

AmbiguousPolicy = Literal["resend", "hold"]


class Phase(StrEnum):
    """Where in the SMTP session an attempt stopped."""

    CONNECT = "connect"  # TCP, TLS, greeting, EHLO, STARTTLS, AUTH: about the account, not the message
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, before the server's 354
    DOT = "dot"  # the message and its final "." were written; waiting for the reply


class Verdict(StrEnum):
    RETRY = "retry"
    FAILED = "failed"
    SUPPRESS = "suppress"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class SmtpOutcome:
    """How one attempt ended; `code` is None when no reply came (connection lost, timeout)."""

    phase: Phase
    code: int | None = None
    text: str = ""
    host: str = ""

    def describe(self) -> str:
        """One line for `last_error` and logs: the reply (or what happened), where, and which server."""
        reply = f"{self.code} {self.text}".strip() if self.code is not None else self.text or "no reply"
        where = f" (at {self.phase.value}" + (f", {self.host})" if self.host else ")")
        return _one_line(reply) + where


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str  # one line: the reply, where, and which server
    bounce: BounceReason | None = None  # why the server refused (a 4xx/5xx reply), for the history

    @property
    def sender_side(self) -> bool:
        """The sender's own setup caused the refusal: the salesperson must fix it."""
        return self.bounce is not None and is_sender_side(self.bounce)


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 status (`5.1.1`) a reply text starts with, if any."""
    match = _ENHANCED.match(text)
    if match is None:
        return None
    return ".".join(str(int(part)) for part in match.groups())


def bounce_reason(code: int | None, text: str | None) -> BounceReason | None:
    """The named reason of a 4xx/5xx reply (`bounce_reasons.reason_of`), else None."""
    if code is None or not 400 <= code < 600:
        return None
    return reason_of(enhanced_status(text or "") or str(code), text or None)


def classify(outcome: SmtpOutcome) -> Decision:
    """Decide what an unsuccessful attempt means for its row."""
    reason = outcome.describe()
    code = outcome.code
    if code is None:
        if outcome.phase is Phase.DOT:
            return Decision(Verdict.AMBIGUOUS, reason)
        return Decision(Verdict.RETRY, reason)
    if outcome.phase is Phase.CONNECT:
        # A refusal of the account (greeting, AUTH): nothing final about this message.
        return Decision(Verdict.RETRY, reason)
    bounce = bounce_reason(code, outcome.text)
    if code < 500:
        # 4xx, or an unexpected 2xx/3xx: not final.
        return Decision(Verdict.RETRY, reason, bounce)
    assert bounce is not None
    if is_soft_failure(bounce, enhanced_status(outcome.text)):
        return Decision(Verdict.RETRY, reason, bounce)
    if suppresses(bounce) and outcome.phase in (Phase.RCPT, Phase.DOT):
        return Decision(Verdict.SUPPRESS, reason, bounce)
    return Decision(Verdict.FAILED, reason, bounce)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff doubles from `base_seconds` up to `max_seconds`; no attempt after `deadline`."""

    base_seconds: float = 60.0
    max_seconds: float = 3600.0
    deadline: timedelta = timedelta(days=3)

    def backoff(self) -> Backoff:
        return Backoff(base=self.base_seconds, cap=max(self.max_seconds, self.base_seconds), factor=2.0)


def deadline_for(policy: RetryPolicy, first_failure: datetime, known: datetime | None) -> datetime:
    """The row's give-up time: fixed at its first failure, then kept."""
    return known if known is not None else first_failure + policy.deadline


def next_attempt(
    policy: RetryPolicy,
    failures: int,
    now: datetime,
    deadline: datetime,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after the `failures`-th failure in a row; None once past `deadline`."""
    at = now + timedelta(seconds=policy.backoff().delay(failures, rng))
    return at if at <= deadline else None


def after_ambiguous(policy: AmbiguousPolicy, previous_ambiguous: int) -> Verdict:
    """A delivery of unknown outcome: resend once (same Message-ID) or hold it for a person.

    `resend` allows at most one extra copy per row: a second unknown outcome is held.
    """
    if policy == "resend" and previous_ambiguous == 0:
        return Verdict.RETRY
    return Verdict.AMBIGUOUS


SEND_SLACK = timedelta(minutes=15)
"""The least lateness tolerated at send time, whatever the planning grace: a sender that is
merely busy (a long batch, a paused account) must not skip rows it was asked to send."""


def ever_attempted(attempts: int, deadline_at: datetime | None, ambiguous_attempts: int = 0) -> bool:
    """A row that reached a server, or entered the retry schedule (which fixes its deadline)."""
    return attempts > 0 or ambiguous_attempts > 0 or deadline_at is not None


def late_reason(due_at: datetime, now: datetime, grace: timedelta, *, attempted: bool) -> str | None:
    """Why a row must not be sent at `now`: due longer than `grace` ago and never attempted.

    The planner records occurrences older than the grace as skipped; rows already in the
    outbox while the daemon was down get the same treatment when it comes back. A row
    that is being retried was on time once: its retry deadline governs, not the grace.
    """
    if attempted or catch_up(due_at, now, max(grace, SEND_SLACK)) != "late":
        return None
    due = due_at.astimezone(UTC) if due_at.tzinfo else due_at
    return f"late: due {due:%Y-%m-%d %H:%M} UTC, grace {format_duration(grace)}"


# Mailbox-status replies (RFC 3463 X.2.x) that say "not now" about this recipient: full
# or temporarily unavailable. 5.2.1 (disabled) is a hard bounce; 5.2.3/5.2.4 are about
# the message or a list, not the mailbox.
SOFT_BOUNCE_STATUSES = frozenset({"4.2.0", "4.2.1", "4.2.2", "5.2.2"})
SOFT_BOUNCE_REASONS = frozenset({BounceReason.MAILBOXFULL})


def is_soft_failure(reason: BounceReason, status: str | None) -> bool:
    """A failure that says "not now" about the recipient's own mailbox (full, unavailable).

    The one rule for soft bounces, whether the SMTP server said it while sending or a
    delivery report found by sync says it: such failures are retried, and the address
    is suppressed only after `sending.soft_bounce_limit` of them within the window.
    """
    return reason in SOFT_BOUNCE_REASONS or status in SOFT_BOUNCE_STATUSES


def is_soft_bounce(code: int | None, text: str | None) -> bool:
    """A 4xx/5xx reply about the recipient's mailbox being full or unavailable for now.

    Reads only the code and the reply text, so it works on the attempt history too.
    """
    reason = bounce_reason(code, text)
    if reason is None or not text:
        return False
    return is_soft_failure(reason, enhanced_status(text))


def too_many_soft(count: int, limit: int) -> bool:
    """Suppress after `limit` soft bounces inside the window (`count` includes this one)."""
    return count >= limit
