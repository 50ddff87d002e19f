"""What a failed SMTP attempt means, and when to try again: a value in, a decision out.

The SMTP shell (`send/smtp.py`) turns aiosmtplib's exceptions into an `SmtpOutcome`
(where in the session it happened, the reply code and text); this module decides:

* `retry`: a 4xx reply, or a connection, TLS or login problem before the final "."
  of DATA: nothing was delivered, so trying again is safe;
* `failed`: a 5xx reply about this message (no retry can help);
* `suppress`: a 5xx reply saying the mailbox does not exist or is disabled (5.1.1,
  5.1.10, 5.2.1): fail the row *and* never write to the address again;
* `ambiguous`: the connection was lost after the final "." was sent and before the
  reply arrived. The server may hold the message (RFC 5321 §6.1 "synchronization
  gap"), so a resend may duplicate it.

Retries back off exponentially with jitter (`domain.backoff`) until a deadline; past
it the row fails as expired with the last reply.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from mailcrm.domain.backoff import Backoff

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
    reason: str


# Enhanced status codes (RFC 3463) that mean the address itself is gone.
SUPPRESS_STATUSES = frozenset({"5.1.1", "5.1.10", "5.2.1"})
# Permanent by class but transient in practice: mailbox full.
SOFT_STATUSES = frozenset({"5.2.2"})

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


def classify(outcome: SmtpOutcome) -> Decision:
    """Decide what an unsuccessful attempt means for its row."""
    reason = outcome.describe()
    code = outcome.code
    if code is None:
        if outcome.phase is Phase.DOT:
            return Decision(Verdict.AMBIGUOUS, reason)
        return Decision(Verdict.RETRY, reason)
    if code < 500 or outcome.phase is Phase.CONNECT:
        # 4xx, an unexpected 2xx/3xx, or a refusal of the account (greeting, AUTH):
        # none of it says anything final about this message.
        return Decision(Verdict.RETRY, reason)
    status = enhanced_status(outcome.text)
    if status in SOFT_STATUSES:
        return Decision(Verdict.RETRY, reason)
    if status in SUPPRESS_STATUSES and outcome.phase in (Phase.RCPT, Phase.DOT):
        return Decision(Verdict.SUPPRESS, reason)
    return Decision(Verdict.FAILED, reason)


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
