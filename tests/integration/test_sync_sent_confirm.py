"""A send whose outcome was unknown (the connection died after the final ".") is
confirmed by the copy the provider filed in the Sent folder: the sync turns the row
`sent`, nothing is sent again, and the message is on the timeline once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import mailgen
import test_sync
from sqlalchemy import select
from test_sync import ALICE, MailEnv, _account

from mailcrm import wiring
from mailcrm.imap.client import ImapClient
from mailcrm.store import outbox, timeline
from mailcrm.store.models import Message, OutboxAttempt, OutboxItem, OutboxState

SOMSRI = "somsri@siam.example"
mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot


def _unknown_row(env: MailEnv, message_id: str, occurrence: str) -> int:
    at = datetime.now(UTC) - timedelta(minutes=5)
    with env.db.write() as session:
        row = OutboxItem(
            rule="birthday",
            customer_id=env.customer_id(SOMSRI),
            occurrence=occurrence,
            template="birthday",
            sender=ALICE,
            due_at=at,
            state=OutboxState.DELIVERY_UNKNOWN.value,
            attempts=1,
            ambiguous_attempts=1,
            last_error="connection lost after the final '.'",
            message_id=message_id,
            updated_at=at,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


async def _append_to_sent(env: MailEnv, raw: bytes) -> None:
    """The provider files the delivered copy in Sent, as Gmail and Office 365 do."""
    client = await ImapClient.connect(wiring.imap_params(_account(env.alice, "TEST_ALICE_PW")))
    try:
        sent = await client.sent_folder()
        assert sent == "Sent"
        await client.append(sent, raw)
    finally:
        await client.close()


def test_a_send_of_unknown_outcome_is_confirmed_by_its_copy_in_sent(mail_env: MailEnv) -> None:
    env = mail_env
    ours = mailgen.message_id("acme.example")
    other = mailgen.message_id("acme.example")
    confirmed_id = _unknown_row(env, ours, "birthday:2025")
    still_unknown = _unknown_row(env, other, "birthday:2026")
    raw = mailgen.make(sender=ALICE, to=SOMSRI, subject="Happy birthday, Somsri!", msgid=ours)
    asyncio.run(_append_to_sent(env, raw))

    results = asyncio.run(env.worker().sync_once())
    assert next(r for r in results if r.folder == "Sent").stats.confirmed_sends == 1

    with env.db.read() as session:
        states = dict(session.execute(select(OutboxItem.id, OutboxItem.state)).all())
        attempts = session.execute(
            select(OutboxAttempt.outcome, OutboxAttempt.reply).where(OutboxAttempt.outbox_id == confirmed_id)
        ).all()
        sent_at = session.execute(
            select(OutboxItem.sent_at).where(OutboxItem.id == confirmed_id)
        ).scalar_one()
    assert states == {confirmed_id: "sent", still_unknown: "delivery_unknown"}
    assert [outcome for outcome, _ in attempts] == [outbox.ATTEMPT_CONFIRMED]
    assert "Sent" in attempts[0][1]
    assert sent_at is not None
    # Nothing is sent again: the row is not claimable.
    assert outbox.claim(env.db, "sender-1", 10, timedelta(minutes=1), datetime.now(UTC)) == []
    # The message is stored once and on the timeline once.
    assert env.count(Message, Message.message_id == ours) == 1
    with env.db.read() as session:
        entries = timeline.for_customer(session, env.customer_id(SOMSRI))
    assert [(e.kind, e.message_id) for e in entries if e.kind != "note"] == [("email_out", ours)]

    # A second sync (and the same copy found again) changes nothing.
    env.sync()
    with env.db.read() as session:
        again = session.execute(select(OutboxAttempt.id).where(OutboxAttempt.outbox_id == confirmed_id)).all()
    assert len(again) == 1
