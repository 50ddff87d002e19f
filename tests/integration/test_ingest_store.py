"""Storing batches of synced mail, on SQLite and PostgreSQL: what a batch adds to timelines,
leads, suppressions and folder locations, and that storing it again adds nothing."""

from __future__ import annotations

from collections.abc import Sequence

import mailgen
import pytest
from sqlalchemy import func, select

from mailcrm.domain.classify import classify
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.messages import parse_message
from mailcrm.store import customers, timeline
from mailcrm.store.db import Database
from mailcrm.store.mail import IncomingMessage, IngestStats, ingest
from mailcrm.store.models import (
    Customer,
    EmailAddress,
    Message,
    MessageLink,
    MessageLocation,
    Suppression,
    TimelineEvent,
)

ALICE = "alice@acme.example"
BOB = "bob@acme.example"
TEAM = frozenset({ALICE, BOB})


def incoming(raw: bytes, uid: int | None = None, flags: Sequence[str] = ()) -> IncomingMessage:
    parsed = parse_message(raw)
    return IncomingMessage(parsed, classify(parsed), uid=uid, flags=frozenset(flags))


def store(
    db: Database,
    items: Sequence[IncomingMessage],
    *,
    mailbox: str = ALICE,
    folder: str = "INBOX",
    uidvalidity: int | None = 7,
) -> IngestStats:
    with db.write() as session:
        return ingest(
            session,
            items,
            mailbox=mailbox,
            folder=folder,
            owner_id=None,
            team_addresses=TEAM,
            uidvalidity=uidvalidity,
        )


def count(db: Database, model: type, *where: object) -> int:
    with db.read() as session:
        return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def customer_of(db: Database, address: str) -> int:
    with db.read() as session:
        found = customers.resolve(session, address).id
    assert found is not None
    return found


def kinds(db: Database, address: str) -> list[str]:
    with db.read() as session:
        events = timeline.for_customer(session, customer_of(db, address))
        return sorted(event.kind for event in events if event.kind != "note")


@pytest.fixture
def crm(db: Database) -> Database:
    with db.write() as session:
        for name, address in (("Somsri Jaidee", "somsri@siam.example"), ("Wang Fang", "wang@golden.example")):
            customers.create(session, draft_from_fields({"name": name, "email": address}, new_record=True))
    return db


def test_a_batch_lands_on_timelines_with_leads_and_locations(crm: Database) -> None:
    ours = mailgen.message_id("acme.example")
    batch = [
        incoming(mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Prices?"), 1, ["\\Seen"]),
        incoming(mailgen.make(sender=ALICE, to="wang@golden.example", msgid=ours, subject="Quote"), 2),
        # The customer answers from an address we do not know yet, in the same batch.
        incoming(
            mailgen.make(sender="fang@home.example", to=ALICE, in_reply_to=ours, subject="Re: Quote"), 3
        ),
        # An unknown person writes twice: one lead, both messages on their timeline.
        incoming(mailgen.make(sender="new.person@startup.example", to=ALICE, name="New Person"), 4),
        incoming(mailgen.make(sender="new.person@startup.example", to=ALICE, subject="Again"), 5),
    ]
    stats = store(crm, batch)
    assert (stats.new_messages, stats.leads, stats.new_addresses) == (5, 1, 1)
    assert kinds(crm, "somsri@siam.example") == ["reply"]
    assert customer_of(crm, "fang@home.example") == customer_of(crm, "wang@golden.example")
    assert kinds(crm, "wang@golden.example") == ["email_out", "reply"]
    assert kinds(crm, "new.person@startup.example") == ["reply", "reply"]
    with crm.read() as session:
        lead = session.get(Customer, customer_of(crm, "new.person@startup.example"))
        assert lead is not None and lead.name == "New Person" and lead.status == "lead"
        locations = session.execute(
            select(
                MessageLocation.uid, MessageLocation.flags, MessageLocation.uidvalidity, Message.message_id
            )
            .join(Message, Message.id == MessageLocation.message_pk)  # type: ignore[arg-type]
            .order_by(MessageLocation.uid)  # type: ignore[arg-type]
        ).all()
    assert [(uid, flags, validity) for uid, flags, validity, _ in locations] == [
        (1, "\\Seen", 7), (2, "", 7), (3, "", 7), (4, "", 7), (5, "", 7)
    ]  # fmt: skip
    assert locations[1][3] == ours


def test_storing_a_batch_again_adds_nothing(crm: Database) -> None:
    batch = [
        incoming(mailgen.make(sender="somsri@siam.example", to=ALICE), 1),
        incoming(mailgen.make(sender="stranger@else.example", to=ALICE), 2),
    ]
    store(crm, batch)
    before = [count(crm, model) for model in (Message, MessageLink, TimelineEvent, Customer, MessageLocation)]
    again = store(crm, batch)
    assert (again.new_messages, again.links, again.leads) == (0, 0, 0)
    after = [count(crm, model) for model in (Message, MessageLink, TimelineEvent, Customer, MessageLocation)]
    assert after == before


def test_one_message_in_two_mailboxes_is_stored_once_and_located_in_both(crm: Database) -> None:
    shared = mailgen.make(sender="somsri@siam.example", to=ALICE, cc=[BOB, "wang@golden.example"])
    store(crm, [incoming(shared, 10), incoming(shared, 10)], mailbox=ALICE)
    store(crm, [incoming(shared, 3)], mailbox=BOB)
    assert count(crm, Message) == 1
    assert count(crm, MessageLocation) == 2
    assert kinds(crm, "somsri@siam.example") == ["reply"]
    assert kinds(crm, "wang@golden.example") == ["email_in"]


def test_a_hard_bounce_suppresses_once_and_tells_the_timeline(crm: Database) -> None:
    def bounce() -> bytes:
        return mailgen.dsn(
            reporting_to=ALICE, failed="wang@golden.example", status="5.1.1", original_id="<o@x>"
        )

    first, second = bounce(), bounce()  # two reports: two emails came back
    stats = store(crm, [incoming(first), incoming(second)], uidvalidity=None)
    assert stats.bounces == 2
    assert count(crm, Suppression, Suppression.address == "wang@golden.example") == 1  # type: ignore[arg-type]
    assert kinds(crm, "wang@golden.example") == ["bounced", "bounced"]
    assert store(crm, [incoming(first), incoming(second)]).bounces == 0  # stored again: nothing new
    assert kinds(crm, "wang@golden.example") == ["bounced", "bounced"]
    assert count(crm, EmailAddress, EmailAddress.address.like("mailer-daemon%")) == 0  # type: ignore[attr-defined]
    assert count(crm, MessageLocation) == 0  # messages from files have no folder location


def test_flag_changes_and_expunges_keep_the_rows(crm: Database) -> None:
    from mailcrm.store import mail

    raws = [mailgen.make(sender="somsri@siam.example", to=ALICE, subject=f"m{i}") for i in range(4)]
    store(crm, [incoming(raw, uid=i + 1, flags=["\\Recent"]) for i, raw in enumerate(raws)])
    store(crm, [incoming(raws[0], uid=1)], uidvalidity=6)  # an older UIDVALIDITY's location
    with crm.write() as session:
        assert mail.live_location_count(session, ALICE, "INBOX", 7, 4) == 4
        changed = mail.apply_flag_changes(session, ALICE, "INBOX", 7, [(2, frozenset({"\\Seen"}), 99)])
        marked = mail.mark_expunged(session, ALICE, "INBOX", 7, [(3, 4), (10, 1_000_000)])
        assert (changed, marked) == (1, 2)
        assert mail.mark_expunged(session, ALICE, "INBOX", 7, [(3, 3)]) == 0  # once
        assert mail.live_location_uids(session, ALICE, "INBOX", 7, 4) == {1, 2}
        assert mail.expunge_other_validities(session, ALICE, "INBOX", 7) == 1
    with crm.read() as session:
        rows = session.execute(
            select(MessageLocation.uidvalidity, MessageLocation.uid, MessageLocation.flags,
                   MessageLocation.modseq, MessageLocation.expunged_at.is_not(None))  # type: ignore[union-attr]
            .order_by(MessageLocation.uidvalidity, MessageLocation.uid)  # type: ignore[arg-type]
        ).all()  # fmt: skip
    assert [tuple(row) for row in rows] == [
        (6, 1, "", None, True),
        (7, 1, "", None, False),  # \Recent belongs to one session: not stored
        (7, 2, "\\Seen", 99, False),
        (7, 3, "", None, True),
        (7, 4, "", None, True),
    ]
    assert count(crm, Message) == 4 and kinds(crm, "somsri@siam.example") == ["reply"] * 4


def test_sends_of_unknown_outcome_are_confirmed_once_by_message_id(crm: Database) -> None:
    from datetime import UTC, datetime

    from mailcrm.store import outbox
    from mailcrm.store.models import OutboxAttempt, OutboxItem

    somsri = customer_of(crm, "somsri@siam.example")
    states = {"<a@acme.example>": "delivery_unknown", "<b@acme.example>": "due", "<c@acme.example>": "sent"}
    with crm.write() as session:
        for index, (message_id, state) in enumerate(states.items()):
            session.add(
                OutboxItem(rule="r", customer_id=somsri, occurrence=str(index), template="t",
                           due_at=datetime.now(UTC), state=state, message_id=message_id)
            )  # fmt: skip
    found = ["<a@acme.example>", "<b@acme.example>", "<c@acme.example>", "<x@elsewhere.example>"]
    with crm.write() as session:
        first = outbox.confirm_from_mailbox(session, found, mailbox=ALICE, folder="Sent")
    with crm.write() as session:
        second = outbox.confirm_from_mailbox(session, found, mailbox=ALICE, folder="Sent")
    assert len(first) == 1 and second == []
    with crm.read() as session:
        now = dict(session.execute(select(OutboxItem.message_id, OutboxItem.state)).all())
    assert now == {"<a@acme.example>": "sent", "<b@acme.example>": "due", "<c@acme.example>": "sent"}
    assert count(crm, OutboxAttempt, OutboxAttempt.outcome == "confirmed") == 1
