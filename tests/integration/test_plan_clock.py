"""The clock stepped backwards (an NTP step) after a send plans nothing new and sends nothing twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sendrunner import OWNER, make_settings, seed_customers, write_templates
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm import planner
from mailcrm.domain.rules import AfterPurchase, Rule, RuleSet
from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, Purchase

RULES = RuleSet(rules=(Rule("thank-you", AfterPurchase(timedelta(hours=1)), "thank_you"),))


def _outbox(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())  # type: ignore[arg-type]


async def _send(db: Database, sender: Sender, now: datetime) -> int:
    try:
        stats = await asyncio.wait_for(sender.send_due(now), timeout=60)
    finally:
        await sender.close()
    return stats.sent


def test_plan_and_send_after_the_clock_steps_back_duplicate_nothing(
    db: Database, smtpd: RecordingSMTPServer, tmp_path: Path
) -> None:
    settings = make_settings(smtpd.port)
    assert settings.salespeople[0].email == OWNER
    renderer = TemplateRenderer(write_templates(tmp_path / "templates"))
    clock = datetime.now(UTC).replace(microsecond=0)  # T, fixed for the whole test
    buyers = seed_customers(db, 3)
    with db.write() as session:
        for n, buyer in enumerate(buyers):
            purchased = clock - timedelta(hours=2, minutes=n)
            session.add(
                Purchase(
                    customer_id=buyer,
                    purchased_at=purchased,
                    purchased_on=purchased.date(),
                    product="Panel",
                    amount_minor=100,
                    currency="EUR",
                    dedupe_key=f"k{n}",
                )
            )

    first = planner.plan(db, settings, RULES, clock)
    assert first.inserted == 3
    planned = {(r.rule, r.customer_id, r.occurrence): r.message_id for r in _outbox(db)}
    assert len(planned) == 3
    sent = asyncio.run(_send(db, Sender(db, sender_config(settings), renderer, worker_id="clock-a"), clock))
    assert sent == 3
    smtpd.handler.wait_for(3)

    for moment in (clock - timedelta(hours=1), clock, clock - timedelta(hours=1)):
        report = planner.plan(db, settings, RULES, moment)
        assert report.inserted == 0, (moment, report)
        rows = _outbox(db)
        assert {(r.rule, r.customer_id, r.occurrence): r.message_id for r in rows} == planned
        assert [r.state for r in rows] == ["sent"] * 3
        again = asyncio.run(
            _send(db, Sender(db, sender_config(settings), renderer, worker_id=f"clock-{moment:%H%M}"), moment)
        )
        assert again == 0

    received = [m.message_id for m in smtpd.messages]
    assert sorted(received) == sorted(planned.values())  # each once, nothing twice
