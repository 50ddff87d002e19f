"""Classifying SMTP outcomes and scheduling retries: pure values in, decisions out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.retry import (
    SEND_SLACK,
    SOFT_BOUNCE_STATUSES,
    Phase,
    RetryPolicy,
    SmtpOutcome,
    Verdict,
    after_ambiguous,
    bounce_reason,
    classify,
    deadline_for,
    enhanced_status,
    is_soft_bounce,
    is_soft_failure,
    late_reason,
    next_attempt,
    too_many_soft,
)
from mailcrm.domain.rules import format_duration

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phase", "code", "text", "verdict"),
    [
        (Phase.MAIL, 421, "4.7.0 try again later", Verdict.RETRY),
        (Phase.RCPT, 450, "4.2.1 mailbox busy", Verdict.RETRY),
        (Phase.DOT, 451, "4.3.0 local error", Verdict.RETRY),
        (Phase.RCPT, 452, "4.2.2 mailbox full", Verdict.RETRY),
        (Phase.RCPT, 552, "5.2.2 mailbox full", Verdict.RETRY),  # soft in practice
        (Phase.RCPT, 550, "5.1.1 no such user", Verdict.SUPPRESS),
        (Phase.RCPT, 550, "5.1.10 recipient address has null MX", Verdict.SUPPRESS),
        (Phase.RCPT, 550, "5.2.1 mailbox disabled", Verdict.SUPPRESS),
        (Phase.DOT, 550, "5.1.1 user unknown (after DATA)", Verdict.SUPPRESS),
        (Phase.MAIL, 550, "5.1.1 sender unknown", Verdict.FAILED),  # about us, not the recipient
        (Phase.RCPT, 550, "5.7.1 relaying denied", Verdict.FAILED),
        (Phase.DOT, 554, "5.7.1 message rejected as spam", Verdict.FAILED),
        (Phase.DATA, 554, "no valid recipients", Verdict.FAILED),
        (Phase.CONNECT, 535, "5.7.8 authentication failed", Verdict.RETRY),  # the account, not the row
        (Phase.CONNECT, 554, "5.7.0 go away", Verdict.RETRY),
        (Phase.CONNECT, None, "connection refused", Verdict.RETRY),
        (Phase.MAIL, None, "connection lost", Verdict.RETRY),
        (Phase.RCPT, None, "timed out", Verdict.RETRY),
        (Phase.DATA, None, "connection lost", Verdict.RETRY),  # before the final dot: safe
        (Phase.DOT, None, "connection lost", Verdict.AMBIGUOUS),
        (Phase.DOT, None, "timed out", Verdict.AMBIGUOUS),
        (Phase.DOT, 354, "unexpected", Verdict.RETRY),
    ],
)
def test_classification(phase: Phase, code: int | None, text: str, verdict: Verdict) -> None:
    decision = classify(SmtpOutcome(phase, code, text, "smtp.example:587"))
    assert decision.verdict is verdict
    assert "smtp.example:587" in decision.reason
    if code is not None:
        assert decision.reason.startswith(f"{code} {text}")


@pytest.mark.parametrize(
    ("phase", "code", "text", "verdict", "bounce", "sender_side"),
    [
        (Phase.RCPT, 550, "5.1.1 no such user", Verdict.SUPPRESS, BounceReason.USERUNKNOWN, False),
        (Phase.RCPT, 550, "5.1.2 bad destination system", Verdict.SUPPRESS, BounceReason.HOSTUNKNOWN, False),
        (Phase.RCPT, 550, "5.1.6 mailbox has moved", Verdict.SUPPRESS, BounceReason.HASMOVED, False),
        (Phase.RCPT, 552, "5.2.2 over quota", Verdict.RETRY, BounceReason.MAILBOXFULL, False),
        (Phase.RCPT, 452, "4.2.2 over quota", Verdict.RETRY, BounceReason.MAILBOXFULL, False),
        (
            Phase.DOT,
            550,
            "5.7.26 Unauthenticated email from acme.example is not accepted due to domain's DMARC policy",
            Verdict.FAILED,
            BounceReason.AUTHFAILURE,
            True,
        ),
        (
            Phase.RCPT,
            550,
            "5.7.25 the sending IP has no PTR record",
            Verdict.FAILED,
            BounceReason.REQUIREPTR,
            True,
        ),
        (Phase.DOT, 552, "5.3.4 message too big", Verdict.FAILED, BounceReason.MESGTOOBIG, False),
        (Phase.RCPT, 421, "4.7.28 rate limited", Verdict.RETRY, BounceReason.SPEEDING, False),
        (Phase.CONNECT, 554, "5.7.26 go away", Verdict.RETRY, None, False),  # the account, not the row
        (Phase.DOT, None, "connection lost", Verdict.AMBIGUOUS, None, False),
    ],
)
def test_verdicts_follow_the_bounce_reason(
    phase: Phase,
    code: int | None,
    text: str,
    verdict: Verdict,
    bounce: BounceReason | None,
    sender_side: bool,
) -> None:
    """Only a permanent recipient failure suppresses; a sender-side cause fails the row for
    the salesperson to fix; the reason recorded is the one the verdict came from."""
    decision = classify(SmtpOutcome(phase, code, text))
    assert (decision.verdict, decision.bounce, decision.sender_side) == (verdict, bounce, sender_side)
    if phase is not Phase.CONNECT:
        assert bounce_reason(code, text) == bounce


def test_soft_failures_are_one_rule_for_replies_and_reports() -> None:
    assert is_soft_failure(BounceReason.MAILBOXFULL, None)  # a report's reason, no status
    assert is_soft_failure(BounceReason.ONHOLD, "4.2.1")  # mailbox busy for now
    assert not is_soft_failure(BounceReason.USERUNKNOWN, "5.1.1")
    assert not is_soft_failure(BounceReason.AUTHFAILURE, "5.7.26")
    assert is_soft_bounce(552, "5.2.2 over quota") and not is_soft_bounce(550, "5.7.26 dmarc")


def test_reason_is_one_line_even_for_multiline_replies() -> None:
    outcome = SmtpOutcome(Phase.RCPT, 550, "5.1.1 no such user\nsee https://help\r\n", "mx:25")
    assert "\n" not in outcome.describe() and "\r" not in outcome.describe()
    assert outcome.describe() == "550 5.1.1 no such user see https://help (at rcpt, mx:25)"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("5.1.1 no such user", "5.1.1"),
        ("  4.02.002 padded", "4.2.2"),
        ("5.1.10 null MX", "5.1.10"),
        ("no status here 5.1.1", None),
        ("5.1.1234 too long", None),
        ("", None),
    ],
)
def test_enhanced_status(text: str, status: str | None) -> None:
    assert enhanced_status(text) == status


def test_backoff_grows_with_jitter_and_stays_within_bounds() -> None:
    policy = RetryPolicy(base_seconds=60, max_seconds=3600, deadline=timedelta(days=3))
    deadline = NOW + policy.deadline
    rng = random.Random(7)
    delays = []
    for failures in range(1, 12):
        at = next_attempt(policy, failures, NOW, deadline, rng)
        assert at is not None
        delay = (at - NOW).total_seconds()
        ceiling = min(3600, 60 * 2 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling
        delays.append(delay)
    assert delays[-1] > delays[0] * 10  # it does back off
    assert max(delays) <= 3600


def test_no_attempt_after_the_deadline() -> None:
    policy = RetryPolicy(base_seconds=60, max_seconds=3600, deadline=timedelta(hours=2))
    deadline = deadline_for(policy, NOW, None)
    assert deadline == NOW + timedelta(hours=2)
    assert next_attempt(policy, 1, NOW, deadline) is not None
    late = deadline - timedelta(seconds=10)
    assert next_attempt(policy, 1, late, deadline, random.Random(1)) is None


def test_the_deadline_is_fixed_at_the_first_failure() -> None:
    policy = RetryPolicy(deadline=timedelta(days=3))
    first = deadline_for(policy, NOW, None)
    assert deadline_for(policy, NOW + timedelta(days=1), first) == first


@given(failures=st.integers(min_value=1, max_value=10_000), seed=st.integers(0, 2**32))
def test_backoff_never_exceeds_cap_or_deadline(failures: int, seed: int) -> None:
    policy = RetryPolicy(base_seconds=30, max_seconds=900, deadline=timedelta(hours=1))
    deadline = NOW + policy.deadline
    at = next_attempt(policy, failures, NOW, deadline, random.Random(seed))
    assert at is not None
    assert NOW < at <= NOW + timedelta(seconds=900)


def test_ambiguous_outcome_is_resent_at_most_once() -> None:
    assert after_ambiguous("resend", 0) is Verdict.RETRY
    assert after_ambiguous("resend", 1) is Verdict.AMBIGUOUS
    assert after_ambiguous("hold", 0) is Verdict.AMBIGUOUS


# -- late rows -----------------------------------------------------------------------------


def test_a_row_within_its_grace_is_not_late() -> None:
    due = NOW - timedelta(hours=5)
    assert late_reason(due, NOW, timedelta(hours=6), attempted=False) is None


def test_a_row_past_its_grace_is_late_with_its_due_time_and_grace() -> None:
    due = NOW - timedelta(days=2)
    reason = late_reason(due, NOW, timedelta(days=1), attempted=False)
    assert reason == "late: due 2026-02-28 09:00 UTC, grace 1d"


def test_overdue_by_exactly_the_grace_is_late() -> None:
    grace = timedelta(hours=2)
    assert late_reason(NOW - grace, NOW, grace, attempted=False) is not None
    assert late_reason(NOW - grace + timedelta(seconds=1), NOW, grace, attempted=False) is None


def test_a_future_row_is_never_late() -> None:
    assert late_reason(NOW + timedelta(days=30), NOW, timedelta(), attempted=False) is None


def test_a_row_being_retried_is_governed_by_its_deadline_not_the_grace() -> None:
    assert late_reason(NOW - timedelta(days=10), NOW, timedelta(hours=1), attempted=True) is None


@pytest.mark.parametrize("grace", [timedelta(), timedelta(minutes=5), -timedelta(hours=1)])
def test_a_small_grace_still_tolerates_a_busy_sender(grace: timedelta) -> None:
    """A grace below SEND_SLACK (even zero or negative) must not skip rows a busy sender is behind on."""
    just_inside = NOW - SEND_SLACK + timedelta(seconds=1)
    assert late_reason(just_inside, NOW, grace, attempted=False) is None
    reason = late_reason(NOW - SEND_SLACK, NOW, grace, attempted=False)
    assert reason is not None and reason.endswith(f"grace {format_duration(grace)}")


def test_the_due_time_is_reported_in_utc() -> None:
    due = datetime(2026, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert late_reason(due, NOW, timedelta(hours=1), attempted=False) == (
        "late: due 2026-03-01 09:30 UTC, grace 1h"
    )


@given(
    overdue=st.integers(min_value=-(10**7), max_value=10**7),
    grace=st.integers(min_value=0, max_value=10**6),
    attempted=st.booleans(),
)
def test_late_exactly_when_unattempted_and_overdue_beyond_grace_and_slack(
    overdue: int, grace: int, attempted: bool
) -> None:
    reason = late_reason(NOW - timedelta(seconds=overdue), NOW, timedelta(seconds=grace), attempted=attempted)
    limit = max(timedelta(seconds=grace), SEND_SLACK).total_seconds()
    expected_late = not attempted and overdue > 0 and overdue >= limit
    assert (reason is not None) is expected_late


# -- soft bounces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "soft"),
    [
        (452, "4.2.2 mailbox full", True),
        (552, "5.2.2 mailbox full", True),
        (450, "4.2.1 mailbox temporarily disabled", True),
        (450, "4.2.0 mailbox status", True),
        (452, "  4.02.002 padded status", True),
        (550, "5.2.1 mailbox disabled", False),  # a hard bounce: suppressed at once
        (550, "5.1.1 no such user", False),
        (552, "5.2.3 message too big", False),  # about the message, not the mailbox
        (452, "4.3.1 insufficient system storage", False),  # the server's problem
        (452, "try again", False),  # nothing says it is the mailbox
        (452, "", False),
        (452, None, False),
        (None, "4.2.2 mailbox full", False),
        (250, "4.2.2 mailbox full", False),
        (354, "4.2.2 mailbox full", False),
        (600, "5.2.2 mailbox full", False),
    ],
)
def test_soft_bounce(code: int | None, text: str | None, soft: bool) -> None:
    assert is_soft_bounce(code, text) is soft


@given(code=st.one_of(st.none(), st.integers()), text=st.one_of(st.none(), st.text()))
def test_a_soft_bounce_is_a_4xx_or_5xx_with_a_mailbox_status(code: int | None, text: str | None) -> None:
    if is_soft_bounce(code, text):
        assert code is not None and 400 <= code < 600
        assert text is not None
        reason = bounce_reason(code, text)
        assert reason is not None and is_soft_failure(reason, enhanced_status(text))
        assert enhanced_status(text) in SOFT_BOUNCE_STATUSES or reason is BounceReason.MAILBOXFULL


def test_soft_bounces_suppress_once_the_limit_is_reached() -> None:
    assert not too_many_soft(4, 5)
    assert too_many_soft(5, 5)  # the count includes the bounce just received
    assert too_many_soft(6, 5)
    assert too_many_soft(1, 1)
    assert not too_many_soft(0, 1)
