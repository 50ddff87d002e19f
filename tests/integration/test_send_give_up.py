"""Past the retry deadline the row fails with the last reply, and the owner is told once
(a `send_failed` event on the customer's timeline and a warning naming them)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sendrunner import OWNER, make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, TimelineEvent
from mailcrm.store.timeline import for_customer
from mailcrm.store.types import utcnow

HOUR = timedelta(hours=1)


async def test_the_owner_is_told_once_when_retries_run_out(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (cid,) = seed_customers(db, 1)
    start = utcnow()
    plan(db, [cid], due_at=start - timedelta(minutes=1))
    smtpd.handler.reply_at["MAIL"] = "451 4.4.5 system congested"
    settings = make_settings(smtpd.port, retry_base_seconds=60, retry_deadline="2h")
    with caplog.at_level(logging.WARNING, logger="mailcrm.send.worker"):
        for step in range(8):  # well past the deadline: later passes find nothing to do
            await send_due(db, settings, templates, start + step * HOUR)
    with db.read() as session:
        row = session.execute(select(OutboxItem)).scalars().one()  # type: ignore[call-overload]
        events = list(
            session.execute(select(TimelineEvent).where(TimelineEvent.kind == "send_failed")).scalars()  # type: ignore[arg-type]
        )
        shown = for_customer(session, cid)
    assert row.state == "failed" and smtpd.messages == []
    assert (row.last_error or "").startswith("expired: no delivery before ")
    assert "451 4.4.5 system congested" in (row.last_error or "")

    (event,) = events
    assert event.customer_id == cid
    assert event.payload["rule"] == "thank-you"
    assert event.payload["salesperson"] == OWNER
    assert event.payload["outbox_id"] == row.id
    assert event.payload["reason"] == row.last_error
    assert any(e.kind == "send_failed" and "thank-you" in e.summary for e in shown)

    given_up = [r for r in caplog.records if getattr(r, "action", None) == "send_given_up"]
    assert len(given_up) == 1
    (record,) = given_up
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    for part in (f"outbox row {row.id}", "rule thank-you", f"customer {cid}", f"salesperson {OWNER}"):
        assert part in text


async def test_a_plain_permanent_failure_is_not_announced_as_given_up(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    plan(db, [cid])
    smtpd.handler.reply_at["DATA"] = "554 5.7.1 rejected as spam"
    assert (await send_due(db, make_settings(smtpd.port), templates, utcnow())).failed == 1
    with db.read() as session:
        kinds = [e.kind for e in session.execute(select(TimelineEvent)).scalars()]  # type: ignore[call-overload]
    assert "send_failed" not in kinds
