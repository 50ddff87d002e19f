"""What a batch's delivery reports, complaints and unsubscribe requests do: pure planning
over a known directory, from `Classification` values as the classifier hands them over."""

from __future__ import annotations

import mailgen
import pytest

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.classify import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.delivery_reports import report_summary, sender_issue_line
from mailcrm.domain.matching import BatchPlan, Directory, plan_batch
from mailcrm.domain.messages import parse_message

ALICE = "alice@acme.example"
ANN, BOB = "ann@x.example", "bob@y.example"
SENT = "<offer-1@acme.example>"


def _directory() -> Directory:
    return Directory(
        customers_by_address={ANN: 1, BOB: 2},
        customers_by_message_id={SENT: frozenset({1})},
        companies_by_domain={},
        team_addresses=frozenset({ALICE}),
    )


def _plan(
    kind: MessageKind,
    *recipients: BouncedRecipient,
    sender: str = "MAILER-DAEMON@mx.acme.example",
    suppressed: frozenset[str] = frozenset(),
) -> BatchPlan:
    parsed = parse_message(mailgen.make(sender=sender, to=ALICE, subject="Delivery report"))
    classification = Classification(kind, "test", tuple(recipients), SENT)
    return plan_batch(
        [(parsed, classification)], _directory(), stored_messages={}, stored_links={}, suppressed=suppressed
    )


def _failed(
    address: str | None, status: str | None, reason: BounceReason, hard: bool = False
) -> BouncedRecipient:
    return BouncedRecipient(address, hard, status, f"smtp; 550 {status}" if status else None, reason)


def _events(plan: BatchPlan) -> list[tuple[int, str]]:
    return [(event.customer_id, event.kind) for event in plan.events]


def test_a_permanent_recipient_failure_suppresses_and_is_a_bounced_event() -> None:
    plan = _plan(MessageKind.BOUNCE, _failed(ANN, "5.1.1", BounceReason.USERUNKNOWN, hard=True))
    assert _events(plan) == [(1, "bounced")]
    (entry,) = plan.suppressions
    assert (entry.address, entry.reason, entry.bounce_reason, entry.status) == (
        ANN,
        "hard_bounce",
        "userunknown",
        "5.1.1",
    )
    (report,) = plan.reports
    assert (report.kind, report.reason, report.suppress, report.sender_side) == (
        "bounced",
        BounceReason.USERUNKNOWN,
        "hard_bounce",
        False,
    )
    assert plan.replied == set() and plan.leads == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("5.2.2", BounceReason.MAILBOXFULL),
        ("5.7.1", BounceReason.SPAMDETECTED),
        ("5.7.1", BounceReason.POLICYVIOLATION),
        ("4.4.7", BounceReason.EXPIRED),
        (None, BounceReason.UNDEFINED),
    ],
)
def test_other_failures_are_reported_with_their_reason_but_suppress_nothing(
    status: str | None, reason: BounceReason
) -> None:
    plan = _plan(MessageKind.BOUNCE, _failed(ANN, status, reason))
    assert _events(plan) == [(1, "bounced")]
    assert plan.suppressions == []
    (report,) = plan.reports
    assert (report.reason, report.suppress, report.sender_side) == (reason, None, False)
    assert f"bounced: {ANN}: {reason.value}" in report_summary(report)
    assert "address not suppressed" in report_summary(report)


def test_the_reason_comes_from_the_status_when_the_classifier_names_none() -> None:
    plan = _plan(MessageKind.BOUNCE, _failed(ANN, "5.2.2", BounceReason.UNDEFINED, hard=True))
    assert plan.reports[0].reason is BounceReason.MAILBOXFULL
    assert plan.suppressions == []  # `hard` alone does not suppress: the reason decides


def test_a_sender_side_failure_is_marked_and_never_suppresses_the_customer() -> None:
    plan = _plan(MessageKind.BOUNCE, _failed(ANN, "5.7.26", BounceReason.AUTHFAILURE))
    (report,) = plan.reports
    assert report.sender_side and report.suppress is None and plan.suppressions == []
    assert "the sender's own setup caused it" in report_summary(report)
    line = sender_issue_line("acme.example", report.reason, "x.example", "550 5.7.26 unauthenticated email")
    assert line == (
        "mail from acme.example fails DKIM/DMARC at x.example (550 5.7.26 unauthenticated email): "
        "fix your DNS (SPF, DKIM, DMARC records)"
    )


def test_a_complaint_suppresses_the_complainer_and_is_no_reply_and_no_lead() -> None:
    complaint = BouncedRecipient(BOB, False, None, None, BounceReason.FEEDBACK)
    plan = _plan(MessageKind.COMPLAINT, complaint, sender="feedback@isp.example")
    assert _events(plan) == [(2, "complained")]
    assert [(s.address, s.reason) for s in plan.suppressions] == [(BOB, "complained")]
    assert plan.replied == set() and plan.leads == []


def test_an_address_already_suppressed_is_not_suppressed_again() -> None:
    complaint = BouncedRecipient(BOB, False, None, None, BounceReason.FEEDBACK)
    plan = _plan(MessageKind.COMPLAINT, complaint, suppressed=frozenset({BOB}))
    assert plan.suppressions == [] and plan.reports[0].suppress is None
    assert _events(plan) == [(2, "complained")]


@pytest.mark.parametrize(
    ("kind", "event"), [(MessageKind.DELAY, "delayed"), (MessageKind.DELIVERED, "delivered")]
)
def test_delay_and_success_reports_are_events_never_replies(kind: MessageKind, event: str) -> None:
    named = _plan(kind, BouncedRecipient(ANN, False, "4.4.7", None, BounceReason.EXPIRED))
    assert _events(named) == [(1, event)]
    # No usable recipient: the customers of the returned message (its Message-ID).
    unnamed = _plan(kind)
    assert _events(unnamed) == [(1, event)]
    for plan in (named, unnamed):
        assert plan.suppressions == [] and plan.replied == set() and plan.leads == []
        assert all(report.suppress is None and not report.sender_side for report in plan.reports)


def test_a_report_for_an_unknown_address_is_kept_without_an_event() -> None:
    plan = _plan(MessageKind.BOUNCE, _failed("nobody@z.example", "5.1.1", BounceReason.USERUNKNOWN))
    assert _events(plan) == [(1, "bounced")]  # the returned message's customer hears of it
    plan_unknown = plan_batch(
        [
            (
                parse_message(mailgen.make(sender="MAILER-DAEMON@mx.acme.example", to=ALICE)),
                Classification(
                    MessageKind.BOUNCE,
                    "t",
                    (_failed("nobody@z.example", "5.7.26", BounceReason.AUTHFAILURE),),
                ),
            )
        ],
        _directory(),
        stored_messages={},
        stored_links={},
        suppressed=(),
    )
    assert _events(plan_unknown) == []
    assert [r.customer_id for r in plan_unknown.reports] == [None]


def test_a_report_stored_before_adds_nothing() -> None:
    raw = mailgen.make(sender="MAILER-DAEMON@mx.acme.example", to=ALICE)
    parsed = parse_message(raw)
    classification = Classification(
        MessageKind.BOUNCE, "t", (_failed(ANN, "5.2.2", BounceReason.MAILBOXFULL),), SENT
    )
    plan = plan_batch(
        [(parsed, classification)],
        _directory(),
        stored_messages={parsed.message_id: 9},
        stored_links={},
        suppressed=(),
    )
    assert plan.reports == [] and plan.events == []


def test_an_unsubscribe_request_is_never_a_reply_or_a_lead() -> None:
    granted = parse_message(mailgen.make(sender=ANN, to=ALICE, subject="unsubscribe-1.x"))
    forged = parse_message(mailgen.make(sender=BOB, to=ALICE, subject="unsubscribe-2.y"))
    stranger = parse_message(mailgen.make(sender="new@z.example", to=ALICE, subject="unsubscribe-3.z"))
    human = Classification(MessageKind.HUMAN, "no automation signal")
    plan = plan_batch(
        [(granted, human), (forged, human), (stranger, human)],
        _directory(),
        stored_messages={},
        stored_links={},
        suppressed=(),
        unsubscribes={granted.message_id: (1, ANN), forged.message_id: None, stranger.message_id: None},
    )
    assert _events(plan) == [(1, "unsubscribed"), (2, "email_in")]
    assert [(s.address, s.reason) for s in plan.suppressions] == [(ANN, "unsubscribe")]
    assert plan.replied == set() and plan.leads == []
