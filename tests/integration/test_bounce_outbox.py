"""A bounce found by a sync attaches to the outbox row whose Message-ID it returns, on
SQLite and PostgreSQL: one `bounced` attempt with the DSN status, once however often the
report is stored again, and nothing for a Message-ID the outbox never sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailcrm.domain.classify import classify
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.messages import parse_message
from mailcrm.store import customers, outbox
from mailcrm.store.db import Database
from mailcrm.store.mail import IncomingMessage, ingest
from mailcrm.store.models import OutboxAttempt, OutboxItem, OutboxState

ALICE = "alice@team.example"
GONE = "gone@customer.example"
REPORT = (Path(__file__).parents[1] / "data" / "mail" / "bounce-rfc3464-hard-511.eml").read_bytes()
ORIGINAL = "<quote-1@team.example>"  # the Message-ID the report returns


def report(original: str, bounce_id: str = "<dsn-1@mx.team.example>") -> IncomingMessage:
    """The RFC 3464 hard bounce of the test data, returning the message `original`."""
    raw = REPORT.replace(ORIGINAL.encode(), original.encode()).replace(
        b"<bounce-rfc3464-hard-511.eml@mx.team.example>", bounce_id.encode()
    )
    parsed = parse_message(raw)
    return IncomingMessage(parsed, classify(parsed), uid=1)


def store(db: Database, *items: IncomingMessage) -> None:
    with db.write() as session:
        ingest(
            session, items, mailbox=ALICE, folder="INBOX", owner_id=None, team_addresses=frozenset({ALICE})
        )


def sent_row(db: Database, message_id: str) -> int:
    at = datetime.now(UTC) - timedelta(hours=1)
    with db.write() as session:
        customer = customers.create(
            session, draft_from_fields({"name": "Gone", "email": GONE}, new_record=True)
        )
        row = OutboxItem(
            rule="birthday",
            customer_id=customer.id,
            occurrence="2024",
            template="birthday",
            sender=ALICE,
            due_at=at,
            state=OutboxState.SENT.value,
            attempts=1,
            message_id=message_id,
            sent_at=at,
            updated_at=at,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def bounced(db: Database, outbox_id: int | None = None) -> list[OutboxAttempt]:
    with db.read() as session:
        query = select(OutboxAttempt).where(OutboxAttempt.outcome == outbox.ATTEMPT_BOUNCED)
        if outbox_id is not None:
            query = query.where(OutboxAttempt.outbox_id == outbox_id)
        return list(session.execute(query).scalars())


def test_a_bounce_attaches_to_the_row_it_returns_once(db: Database) -> None:
    sent = "<birthday-7@team.example>"
    pk = sent_row(db, sent)
    store(db, report(sent))

    attempts = bounced(db, pk)
    assert len(attempts) == 1
    assert attempts[0].code is None
    assert attempts[0].reason == "userunknown"
    reply = attempts[0].reply or ""
    assert reply.startswith("5.1.1 userunknown, suppressed: ") and "User unknown" in reply
    assert reply.endswith(f"(reported by {ALICE})")
    with db.read() as session:
        row = session.get(OutboxItem, pk)
        assert row is not None
        assert (row.state, row.last_error) == (OutboxState.SENT.value, reply)
        assert [(a.outcome, a.reason) for a in outbox.history(session, pk)] == [
            (outbox.ATTEMPT_BOUNCED, "userunknown")
        ]

    # A resync, and a second copy of the report in another batch, add nothing.
    store(db, report(sent))
    store(db, report(sent, "<dsn-2@mx.team.example>"))
    assert len(bounced(db, pk)) == 1


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_bounce_of_an_unknown_message_changes_no_row(db: Database, same_batch: bool) -> None:
    pk = sent_row(db, "<birthday-8@team.example>")
    unknown = report("<someone-else@team.example>")
    if same_batch:
        store(db, unknown, report("<birthday-8@team.example>", "<dsn-3@mx.team.example>"))
        assert len(bounced(db)) == 1 and len(bounced(db, pk)) == 1
    else:
        store(db, unknown)
        assert bounced(db) == []
    with db.read() as session:
        total = session.execute(select(func.count()).select_from(OutboxAttempt)).scalar_one()
    assert total == (1 if same_batch else 0)
