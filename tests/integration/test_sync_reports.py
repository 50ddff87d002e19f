"""Bounces, complaints, delay notices and unsubscribe requests stored by sync, on SQLite and
PostgreSQL: what lands on the customer's timeline, what is suppressed (and why), what a
follow-up rule then plans, and what the salesperson is told about their own setup."""

from __future__ import annotations

from pathlib import Path

import mailgen
import pytest
from plan_fixtures import ALICE, BOB, World, make_settings
from sqlalchemy import select

from mailcrm.domain import unsubscribe
from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.classify import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.matching import MatchPolicy, read_batch
from mailcrm.domain.messages import parse_message
from mailcrm.store import keys, timeline
from mailcrm.store.mail import IncomingMessage, IngestStats, ingest
from mailcrm.store.models import Customer, DeliveryReport, EmailAddress, OutboxItem, SenderIssue, Suppression
from mailcrm.store.timeline import TimelineEntry

ANN = "ann@x.example"
OFFER = "<offer-1@acme.example>"
OTHER = "<offer-2@acme.example>"
FOLLOW_UP = """
    rules:
      - name: follow-up
        when: {no_reply_to: any_outbound, wait: 3d}
        template: follow_up
"""


@pytest.fixture
def world(db, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    return World(db, make_settings(tmp_path))


def store(world: World, *raws: bytes | IncomingMessage, policy: MatchPolicy | None = None) -> IngestStats:
    items = [
        raw if isinstance(raw, IncomingMessage) else IncomingMessage(*read_batch([raw])[0]) for raw in raws
    ]
    with world.db.write() as session:
        return ingest(
            session,
            items,
            mailbox=ALICE,
            folder="INBOX",
            owner_id=None,
            team_addresses=frozenset({ALICE, BOB}),
            policy=policy or MatchPolicy(),
        )


def dsn(status: str, diagnostic: str, original: str = OFFER, action: str = "failed") -> bytes:
    return mailgen.dsn(
        reporting_to=ALICE,
        failed=ANN,
        status=status,
        original_id=original,
        action=action,
        diagnostic=diagnostic,
    )


def entries(world: World, email: str = ANN) -> list[TimelineEntry]:
    with world.db.read() as session:
        (customer,) = session.execute(
            select(EmailAddress.customer_id).where(EmailAddress.address == email)
        ).one()
        return timeline.for_customer(session, customer)


def suppressions(world: World) -> list[tuple[str, str, str | None, str | None]]:
    with world.db.read() as session:
        rows = session.execute(select(Suppression).order_by(Suppression.address)).scalars()  # type: ignore[arg-type]
        return [(s.address, s.reason, s.bounce_reason, s.status) for s in rows]


def ann_with_two_offers(world: World) -> int:
    ann = world.customer(ANN)
    world.outbound(ann, OFFER, "2026-06-10T09:00")
    world.outbound(ann, OTHER, "2026-06-10T09:00")
    return ann


def follow_ups(world: World, at: str = "2026-06-10T10:00") -> set[str]:
    rules = world.rules(FOLLOW_UP)
    return {p.occurrence.split(":")[1] for p in world.forecast(rules, at, days=5)}


def test_a_full_mailbox_is_recorded_with_its_reason_and_suppresses_nothing(world: World) -> None:
    ann_with_two_offers(world)
    rules = world.rules(FOLLOW_UP)
    world.plan(rules, "2026-06-13T08:00")  # both follow-ups are due
    stats = store(world, dsn("5.2.2", "smtp; 552 5.2.2 Mailbox full: quota exceeded"))
    assert stats.bounces == 1

    (event,) = entries(world)
    assert event.kind == "bounced"
    assert event.payload["reason"] == "mailboxfull" and event.payload["suppressed"] is False
    assert event.summary == f"bounced: {ANN}: mailboxfull (5.2.2); address not suppressed"
    assert suppressions(world) == []
    with world.db.read() as session:
        (report,) = session.execute(select(DeliveryReport)).scalars()  # type: ignore[call-overload]
        assert (report.kind, report.reason, report.original_message_id) == ("bounced", "mailboxfull", OFFER)
        rows = {row.in_reply_to: row for row in session.execute(select(OutboxItem)).scalars()}  # type: ignore[call-overload]
    # The email that came back reached nobody: its follow-up is cancelled and never planned
    # again; the other email's follow-up still goes out.
    assert rows[OFFER].state == "cancelled"
    assert rows[OFFER].skip_reason == "bounced: the email it follows up was not delivered (mailboxfull)"
    assert rows[OTHER].state == "due"
    assert follow_ups(world) == {OTHER.strip("<>")}


def test_full_mailboxes_reported_by_sync_suppress_at_the_soft_bounce_limit(world: World) -> None:
    ann_with_two_offers(world)
    policy = MatchPolicy(soft_bounce_limit=2)
    full = "smtp; 552 5.2.2 Mailbox full"
    store(world, dsn("5.2.2", full), policy=policy)
    assert suppressions(world) == []
    store(world, dsn("5.2.2", full, original=OTHER), policy=policy)  # the second within the window
    assert suppressions(world) == [(ANN, "soft_bounce", "mailboxfull", "5.2.2")]
    newest = entries(world)[0]
    assert newest.payload["suppression_reason"] == "soft_bounce"
    assert newest.summary.endswith("address suppressed")


def test_an_unknown_user_suppresses_with_reason_and_status(world: World) -> None:
    ann_with_two_offers(world)
    store(world, dsn("5.1.1", "smtp; 550 5.1.1 <ann@x.example>: Recipient address rejected: User unknown"))
    assert suppressions(world) == [(ANN, "hard_bounce", "userunknown", "5.1.1")]
    (event,) = entries(world)
    assert (event.kind, event.payload["reason"], event.payload["suppressed"]) == (
        "bounced",
        "userunknown",
        True,
    )
    assert event.summary.endswith("address suppressed")


def test_a_dmarc_failure_is_the_senders_issue_counted_once_per_cause(world: World) -> None:
    ann_with_two_offers(world)
    words = "smtp; 550 5.7.26 Unauthenticated email from acme.example is not accepted due to DMARC policy"
    first = store(world, dsn("5.7.26", words))
    second = store(world, dsn("5.7.26", words, original=OTHER))
    assert suppressions(world) == []
    assert first.sender_issues == [
        "mail from acme.example fails DKIM/DMARC at x.example (550 5.7.26 Unauthenticated email from "
        "acme.example is not accepted due to DMARC policy): fix your DNS (SPF, DKIM, DMARC records)"
    ]
    assert second.sender_issues == []  # the salesperson hears it once
    with world.db.read() as session:
        (issue,) = session.execute(select(SenderIssue)).scalars()  # type: ignore[call-overload]
    assert (issue.sender_domain, issue.cause, issue.receiving_domain, issue.count) == (
        "acme.example",
        "authfailure",
        "x.example",
        2,
    )
    assert issue.first_seen <= issue.last_seen
    events = entries(world)
    assert [e.kind for e in events] == ["bounced", "bounced"]
    assert all(e.payload["sender_side"] and not e.payload["suppressed"] for e in events)
    assert "the sender's own setup caused it" in events[0].summary


def test_a_complaint_suppresses_the_complainer_and_is_never_a_reply(world: World) -> None:
    ann = ann_with_two_offers(world)
    raw = mailgen.make(sender="feedback@isp.example", to=ALICE, subject="Abuse report", in_reply_to=OFFER)
    parsed = parse_message(raw)
    complaint = Classification(
        MessageKind.COMPLAINT,
        "ARF feedback report",
        (BouncedRecipient(ANN, False, None, None, BounceReason.FEEDBACK),),
        OFFER,
    )
    store(world, IncomingMessage(parsed, complaint))
    assert suppressions(world) == [(ANN, "complained", "feedback", None)]
    assert [e.kind for e in entries(world)] == ["complained"]
    with world.db.read() as session:
        assert session.get(Customer, ann) is not None
        assert (
            session.execute(
                select(EmailAddress).where(EmailAddress.address == "feedback@isp.example")
            ).first()
            is None
        )


def test_a_delay_notice_is_a_delayed_event_and_stops_no_follow_up(world: World) -> None:
    ann_with_two_offers(world)
    notice = mailgen.dsn(
        reporting_to=ALICE,
        failed="someone@elsewhere.example",
        status="4.4.7",
        original_id=OFFER,
        action="delayed",
    )
    store(world, notice)
    (event,) = entries(world)  # matched through the delayed email's Message-ID
    assert event.kind == "delayed" and event.payload["suppressed"] is False
    assert suppressions(world) == []
    assert follow_ups(world) == {OFFER.strip("<>"), OTHER.strip("<>")}


def _offer_row(world: World, customer: int) -> int:
    rules = world.rules(
        """
        rules:
          - name: offer
            when: {on: "2026-06-10T09:00"}
            template: thank_you
        """
    )
    world.plan(rules, "2026-06-10T08:00")
    with world.db.read() as session:
        query = select(OutboxItem.id).where(OutboxItem.customer_id == customer)
        return int(session.execute(query).scalar_one())


def _token(world: World, row: int, address: str) -> str:
    with world.db.write() as session:
        return unsubscribe.sign(keys.signing_key(session), row, address)


def test_an_unsubscribe_request_by_mail_suppresses_at_once(world: World) -> None:
    ann = world.customer(ANN)
    token = _token(world, _offer_row(world, ann), ANN)
    store(world, mailgen.make(sender=ANN, to=ALICE, subject=f"unsubscribe-{token}", body="Stop.\n"))
    assert suppressions(world) == [(ANN, "unsubscribe", None, None)]
    assert [e.kind for e in entries(world)] == ["unsubscribed"]
    # Sent from another of the person's mailboxes, with the token in the first body line:
    # honoured just the same (the token names the address), and the stranger is no lead.
    world.customer("bo@y.example")
    bo_token = _token(world, _offer_row(world, world.customer("bob@y.example")), "bob@y.example")
    store(
        world,
        mailgen.make(
            sender="bob.home@z.example", to=ALICE, subject="Unsubscribe", body=f"unsubscribe-{bo_token}\n"
        ),
    )
    assert ("bob@y.example", "unsubscribe", None, None) in suppressions(world)
    with world.db.read() as session:
        assert (
            session.execute(select(EmailAddress).where(EmailAddress.address == "bob.home@z.example")).first()
            is None
        )


@pytest.mark.parametrize("forgery", ["altered", "other address", "unknown row"])
def test_a_forged_unsubscribe_request_suppresses_nothing(world: World, forgery: str) -> None:
    ann = world.customer(ANN)
    row = _offer_row(world, ann)
    token = _token(world, row, ANN)
    forged = {
        "altered": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "other address": _token(world, row, "mallory@evil.example"),
        "unknown row": _token(world, row + 1000, ANN),
    }[forgery]
    store(world, mailgen.make(sender=ANN, to=ALICE, subject=f"unsubscribe-{forged}"))
    assert suppressions(world) == []
    assert [e.kind for e in entries(world)] == ["email_in"]  # ordinary inbound mail, not a reply


def test_a_damaged_signing_key_is_named_not_a_traceback(world: World) -> None:
    from sqlalchemy import update

    from mailcrm.errors import DatabaseError
    from mailcrm.store.models import SigningKey

    ann = world.customer(ANN)
    token = _token(world, _offer_row(world, ann), ANN)
    with world.db.write() as session:
        session.execute(update(SigningKey).values(secret="not hex"))
    with pytest.raises(DatabaseError, match=r"(?s)signing_key .unsubscribe.*DELETE FROM signing_key"):
        store(world, mailgen.make(sender=ANN, to=ALICE, subject=f"unsubscribe-{token}"))
