"""Confirming an unknown send from the Sent folder, the other order: the sync stored the
Sent copy *before* the row's outcome became unknown (its sender died inside the SMTP
transaction and a later claim set it aside, or the connection was lost and the sender
held it). The copy is already in `message`, so the sync will not see it again: the
sender's next claim confirms the row instead."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sendrunner import OWNER, plan, seed_customers
from sqlalchemy import select

from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import Message, OutboxAttempt, OutboxItem, table_of
from mailcrm.store.types import utcnow

LEASE = timedelta(seconds=60)
_OUTBOX = table_of(OutboxItem)
_ATTEMPT = table_of(OutboxAttempt)


def _store_sent_copy(db: Database, message_id: str) -> None:
    """What the sync stores for the copy the provider filed in Sent."""
    with db.write() as session:
        session.add(Message(message_id=message_id, direction="out", mailbox=OWNER, folder="Sent"))


def _state(db: Database) -> dict[int, tuple[str, datetime | None, list[tuple[str, str | None]]]]:
    """Each row's state, sent_at and attempt history (outcome, reply) in order."""
    with db.read() as session:
        rows = session.execute(select(_OUTBOX.c.id, _OUTBOX.c.state, _OUTBOX.c.sent_at)).all()
        history = select(_ATTEMPT.c.outbox_id, _ATTEMPT.c.outcome, _ATTEMPT.c.reply).order_by(_ATTEMPT.c.id)
        attempts = session.execute(history).all()
    return {
        pk: (state, sent_at, [(a.outcome, a.reply) for a in attempts if a.outbox_id == pk])
        for pk, state, sent_at in rows
    }


def test_a_row_held_after_a_crash_is_confirmed_by_a_copy_stored_earlier(db: Database) -> None:
    plan(db, seed_customers(db, 2))
    now = utcnow()
    rows = outbox.claim(db, "dead", 10, LEASE, now)
    assert len(rows) == 2
    for row in rows:
        assert outbox.mark_sending(db, row, now)  # both final dots were on their way
    delivered, lost = rows
    _store_sent_copy(db, delivered.message_id)  # the sync got there before the restart

    later = now + LEASE + timedelta(seconds=1)
    assert outbox.claim(db, "next", 10, LEASE, later, ambiguous="hold") == []

    states = _state(db)
    state, sent_at, attempts = states[delivered.id]
    assert state == "sent" and sent_at is not None
    assert [outcome for outcome, _ in attempts] == ["ambiguous", outbox.ATTEMPT_CONFIRMED]
    assert attempts[-1][1] == f"found in Sent of {OWNER}"
    assert states[lost.id][0] == "delivery_unknown"
    assert [outcome for outcome, _ in states[lost.id][2]] == ["ambiguous"]

    # Confirmed once: later passes leave the history alone.
    outbox.claim(db, "next", 10, LEASE, later + LEASE)
    assert _state(db) == states


def test_a_row_held_on_stop_is_confirmed_by_the_next_claim(db: Database) -> None:
    plan(db, seed_customers(db, 1))
    now = utcnow()
    (row,) = outbox.claim(db, "me", 10, LEASE, now)
    assert outbox.mark_sending(db, row, now)
    _store_sent_copy(db, row.message_id)
    outbox.release(db, "me", now, ambiguous="hold")
    assert _state(db)[row.id][0] == "delivery_unknown"

    assert outbox.claim(db, "me", 10, LEASE, now + timedelta(seconds=1), ambiguous="hold") == []
    state, _, attempts = _state(db)[row.id]
    assert state == "sent"
    assert attempts[-1][0] == outbox.ATTEMPT_CONFIRMED


def test_a_row_the_sender_held_itself_is_confirmed_by_its_next_claim(db: Database) -> None:
    plan(db, seed_customers(db, 1))
    now = utcnow()
    (row,) = outbox.claim(db, "me", 10, LEASE, now)
    assert outbox.mark_sending(db, row, now)
    _store_sent_copy(db, row.message_id)
    assert outbox.mark_unknown(db, row, "connection lost after the final '.'", now=now)
    assert _state(db)[row.id][0] == "delivery_unknown"

    outbox.claim(db, "me", 10, LEASE, now + timedelta(seconds=1))
    state, sent_at, attempts = _state(db)[row.id]
    assert state == "sent" and sent_at is not None
    assert [outcome for outcome, _ in attempts] == ["ambiguous", outbox.ATTEMPT_CONFIRMED]


@pytest.mark.parametrize("folder", [None, "Sent"])
def test_confirm_stored_names_where_the_copy_was_found(db: Database, folder: str | None) -> None:
    plan(db, seed_customers(db, 3))
    now = utcnow()
    rows = outbox.claim(db, "me", 10, LEASE, now)
    for row in rows:
        assert outbox.mark_unknown(db, row, "connection lost", now=now)
    with db.write() as session:
        session.add(Message(message_id=rows[0].message_id, direction="out", mailbox=OWNER, folder=folder))
        session.add(Message(message_id=rows[2].message_id, direction="out", mailbox=OWNER, folder=folder))
    with db.write() as session:
        assert outbox.confirm_stored(session, now=now) == sorted([rows[0].id, rows[2].id])
    with db.write() as session:
        assert outbox.confirm_stored(session, now=now) == []
    states = _state(db)
    assert [states[row.id][0] for row in rows] == ["sent", "delivery_unknown", "sent"]
    where = f"found in Sent of {OWNER}" if folder else "found in a stored message"
    assert states[rows[0].id][2][-1] == (outbox.ATTEMPT_CONFIRMED, where)
