"""The clock jumped forward while the daemon was down, at send time: rows already in
the outbox while the daemon was down are not sent late.

The planner records occurrences older than the catch-up grace as skipped; these tests
cover rows planned in time whose sender was not running, on both databases, with the
sender's clock fixed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sendrunner import make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm.settings import PlanningSettings, Settings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def _settings(port: int, grace_hours: float = 6.0, **sending: object) -> Settings:
    settings = make_settings(port, **sending)
    return settings.model_copy(update={"planning": PlanningSettings(grace_hours=grace_hours)})


def _by_customer(db: Database) -> dict[int, OutboxItem]:
    with db.read() as session:
        return {r.customer_id: r for r in session.execute(select(OutboxItem)).scalars()}  # type: ignore[misc]


async def test_a_row_due_before_the_grace_is_skipped_and_a_recent_one_sent(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    old, recent = seed_customers(db, 2)
    plan(db, [old], due_at=NOW - timedelta(days=2))
    plan(db, [recent], due_at=NOW - timedelta(minutes=10))
    stats = await send_due(db, _settings(smtpd.port), templates, NOW)
    assert (stats.sent, stats.skipped) == (1, 1)
    (received,) = smtpd.messages
    assert received.rcpt_tos == ("c1@example.org",)
    rows = _by_customer(db)
    assert rows[recent].state == "sent"
    late = rows[old]
    assert (late.state, late.attempts) == ("skipped", 0)
    assert late.skip_reason == "late: due 2026-05-30 09:00 UTC, grace 6h"
    with db.read() as session:
        assert outbox.history(session, late.id) == []  # nothing reached a server
    again = await send_due(db, _settings(smtpd.port), templates, NOW + timedelta(minutes=5))
    assert again.claimed == 0 and len(smtpd.messages) == 1


async def test_a_row_taken_over_from_a_stopped_sender_is_skipped_when_late(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    due = NOW - timedelta(days=2)
    plan(db, [cid], due_at=due)
    (held,) = outbox.claim(db, "crashed", 10, timedelta(minutes=5), due)  # then the daemon died
    stats = await send_due(db, _settings(smtpd.port), templates, NOW)
    assert (stats.claimed, stats.skipped, stats.sent) == (1, 1, 0)
    assert smtpd.messages == []
    row = _by_customer(db)[cid]
    assert row.id == held.id and row.state == "skipped"
    assert (row.skip_reason or "").startswith("late: due 2026-05-30 09:00 UTC")


async def test_a_retry_of_a_row_attempted_in_time_is_still_sent(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    plan(db, [cid], due_at=NOW - timedelta(minutes=1))
    smtpd.handler.queue_reply("MAIL", "451 4.3.0 try later")
    settings = _settings(smtpd.port, retry_deadline="3d")
    assert (await send_due(db, settings, templates, NOW)).retried == 1
    # The daemon is down for two days; the retry deadline (3 days) has not passed.
    later = await send_due(db, settings, templates, NOW + timedelta(days=2))
    assert later.sent == 1
    row = _by_customer(db)[cid]
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(smtpd.messages) == 1


async def test_a_short_grace_never_skips_a_row_the_sender_is_merely_busy_with(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (cid,) = seed_customers(db, 1)
    plan(db, [cid], due_at=NOW - timedelta(minutes=2))
    stats = await send_due(db, _settings(smtpd.port, grace_hours=0), templates, NOW)
    assert stats.sent == 1 and _by_customer(db)[cid].state == "sent"
