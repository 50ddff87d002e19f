"""Soft bounces (mailbox full) are retried; the address is suppressed only after
`sending.soft_bounce_limit` of them within `sending.soft_bounce_window`, counted from
the attempt history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sendrunner import make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, Suppression, TimelineEvent
from mailcrm.store.types import utcnow

HOUR = timedelta(hours=1)


def _row(db: Database, customer_id: int, rule: str = "thank-you") -> OutboxItem:
    with db.read() as session:
        query = select(OutboxItem).where(OutboxItem.customer_id == customer_id, OutboxItem.rule == rule)
        return session.execute(query).scalars().one()  # type: ignore[call-overload, no-any-return]


def _suppressions(db: Database) -> list[Suppression]:
    with db.read() as session:
        return list(session.execute(select(Suppression)).scalars())  # type: ignore[call-overload]


@pytest.mark.parametrize("reply", ["452 4.2.2 mailbox full", "552 5.2.2 mailbox quota exceeded"])
async def test_suppressed_only_after_the_limit_of_soft_bounces(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, reply: str
) -> None:
    full, other = seed_customers(db, 2)
    start = utcnow()
    plan(db, [full, other], due_at=start - timedelta(minutes=1))
    smtpd.handler.reply_for_rcpt["c0@example.org"] = reply
    settings = make_settings(smtpd.port, retry_base_seconds=60, soft_bounce_limit=3, soft_bounce_window="7d")
    for step in range(2):  # limit - 1 soft bounces: retried, not suppressed
        stats = await send_due(db, settings, templates, start + step * 2 * HOUR)
        assert stats.retried == 1
    row = _row(db, full)
    assert (row.state, row.attempts) == ("due", 2)
    assert reply.split(" ", 1)[1] in (row.last_error or "")
    assert _suppressions(db) == []
    assert _row(db, other).state == "sent"

    third = await send_due(db, settings, templates, start + 4 * HOUR)
    assert third.failed == 1
    row = _row(db, full)
    assert (row.state, row.attempts) == ("failed", 3)
    assert (row.last_error or "").startswith("suppressed: 3 soft bounces in 1w; last: ")
    (suppression,) = _suppressions(db)
    assert (suppression.address, suppression.reason) == ("c0@example.org", "soft_bounce")
    assert "3 soft bounces in 1w" in (suppression.detail or "")
    with db.read() as session:
        bounced = session.execute(select(TimelineEvent).where(TimelineEvent.kind == "bounced")).scalars()  # type: ignore[arg-type]
        assert [e.customer_id for e in bounced] == [full]

    smtpd.handler.reset()
    plan(db, [full], rule="win-back", occurrence="nopurchase:2026-01-01", due_at=start + 4 * HOUR)
    later = await send_due(db, settings, templates, start + 5 * HOUR)
    assert later.skipped == 1
    assert smtpd.messages == [] and smtpd.handler.rejections == []  # nothing reached the server
    skipped = _row(db, full, rule="win-back")
    assert (skipped.state, skipped.skip_reason) == ("skipped", "suppressed: c0@example.org (soft_bounce)")


async def test_soft_bounces_outside_the_window_do_not_count(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    start = utcnow()
    plan(db, [cid], due_at=start - timedelta(minutes=1))
    smtpd.handler.reply_for_rcpt["c0@example.org"] = "452 4.2.2 mailbox full"
    settings = make_settings(
        smtpd.port, retry_base_seconds=60, retry_deadline="5d", soft_bounce_limit=2, soft_bounce_window="1d"
    )
    assert (await send_due(db, settings, templates, start)).retried == 1
    assert (await send_due(db, settings, templates, start + timedelta(days=2))).retried == 1
    assert _row(db, cid).state == "due" and _suppressions(db) == []
    assert (await send_due(db, settings, templates, start + timedelta(days=2, hours=2))).failed == 1
    assert [s.reason for s in _suppressions(db)] == ["soft_bounce"]


async def test_other_transient_failures_are_not_soft_bounces(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    start = utcnow()
    plan(db, [cid], due_at=start - timedelta(minutes=1))
    smtpd.handler.queue_reply("MAIL", "451 4.3.0 queue full", "421 4.7.0 too many connections")
    smtpd.handler.queue_reply("RCPT", "452 4.5.3 too many recipients")
    settings = make_settings(smtpd.port, retry_base_seconds=60, soft_bounce_limit=1)
    for step in range(3):
        assert (await send_due(db, settings, templates, start + step * 2 * HOUR)).retried == 1
    assert _suppressions(db) == []
    assert (await send_due(db, settings, templates, start + 6 * HOUR)).sent == 1
    assert _row(db, cid).state == "sent"
