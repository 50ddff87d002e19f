"""SMTP replies at send time judged by their bounce reason, on SQLite and PostgreSQL: only a
permanent recipient failure suppresses the address; a refusal caused by the sender's own
setup (DMARC, 5.7.26) fails the row, spares the customer, and is told to the salesperson
once per cause; `outbox show` lists each attempt's reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sendrunner import make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, SenderIssue, Suppression, TimelineEvent

DMARC = "550 5.7.26 Unauthenticated email from acme.example is not accepted due to domain's DMARC policy"


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.customer_id)).scalars())  # type: ignore[arg-type]


async def test_a_dmarc_refusal_fails_the_row_and_spares_the_customer(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = seed_customers(db, 2)
    plan(db, [first, second])
    smtpd.handler.reply_for_rcpt["c0@example.org"] = DMARC
    smtpd.handler.reply_for_rcpt["c1@example.org"] = DMARC
    with caplog.at_level(logging.WARNING, logger="mailcrm"):
        stats = await send_due(db, make_settings(smtpd.port), templates)
    assert stats.failed == 2
    rows = _rows(db)
    assert [row.state for row in rows] == ["failed", "failed"]
    with db.read() as session:
        history = outbox.history(session, rows[0].id)  # type: ignore[arg-type]
        assert [(a.outcome, a.code, a.reason) for a in history] == [("failed", 550, "authfailure")]
        assert session.execute(select(Suppression)).first() is None
        (issue,) = session.execute(select(SenderIssue)).scalars()  # type: ignore[call-overload]
        assert (issue.sender_domain, issue.cause, issue.receiving_domain, issue.count) == (
            "acme.example",
            "authfailure",
            "example.org",
            2,
        )
        events = list(session.execute(select(TimelineEvent)).scalars())  # type: ignore[call-overload]
    assert {(e.kind, e.payload["bounce_reason"], e.payload["sender_side"]) for e in events} == {
        ("send_failed", "authfailure", True)
    }
    assert "the sender's own setup caused it" in events[0].payload["summary"]
    told = [r.getMessage() for r in caplog.records if "fails DKIM/DMARC" in r.getMessage()]
    assert told == [
        f"mail from acme.example fails DKIM/DMARC at example.org ({DMARC}): "
        "fix your DNS (SPF, DKIM, DMARC records)"
    ]


async def test_an_unknown_user_is_suppressed_with_its_reason(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (customer,) = seed_customers(db, 1)
    plan(db, [customer])
    smtpd.handler.reply_for_rcpt["c0@example.org"] = "550 5.1.1 no such user"
    assert (await send_due(db, make_settings(smtpd.port), templates)).failed == 1
    with db.read() as session:
        (row,) = _rows(db)
        assert [(a.outcome, a.reason) for a in outbox.history(session, row.id)] == [  # type: ignore[arg-type]
            ("suppressed", "userunknown")
        ]
        (suppression,) = session.execute(select(Suppression)).scalars()  # type: ignore[call-overload]
    assert (suppression.reason, suppression.bounce_reason, suppression.status) == (
        "hard_bounce",
        "userunknown",
        "5.1.1",
    )
