"""Classifying SMTP outcomes and scheduling retries: pure values in, decisions out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain.retry import (
    Phase,
    RetryPolicy,
    SmtpOutcome,
    Verdict,
    after_ambiguous,
    classify,
    deadline_for,
    enhanced_status,
    next_attempt,
)

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
