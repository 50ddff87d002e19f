"""The demo's automated email: plan the demo rules, then send what is due through SMTP.

Both steps are the daemon's own: `planner.plan` (the planning tick) and the `Sender`
(claim, check, render, build, send over a pooled SMTP connection, record). The only
demo part is the server at the other end, which keeps each message as a file.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from sqlmodel import Session

from mailcrm import planner
from mailcrm.demo.smtp_server import DemoSmtpServer
from mailcrm.render import TemplateRenderer
from mailcrm.send.results import SendStats
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store import overview
from mailcrm.store.db import Database

MAX_BATCHES = 50
SEND_TIMEOUT = 120.0  # seconds for all batches together; the demo sends a few dozen emails


def plan(db: Database, settings: Settings, now: datetime | None = None) -> planner.PlanReport:
    """One planning pass over the demo rules, as the daemon's planning tick runs it."""
    return planner.plan(db, settings, planner.configured_rules(settings), now)


async def send(
    db: Database, settings: Settings, server: DemoSmtpServer, *, keep_serving: bool = False
) -> SendStats:
    """Send every due email through the demo SMTP server; the server is stopped afterwards,
    unless `keep_serving` (`demo --serve`, whose daemon sends through it next) and all went well.

    Batches until one claims nothing (rows retried or held by the frequency cap wait for
    later), at most MAX_BATCHES and SEND_TIMEOUT seconds.
    """
    total = SendStats()
    await server.start()
    renderer = TemplateRenderer(settings.templates_path())
    sender = Sender(db, sender_config(settings), renderer, worker_id="mailcrm-demo")
    try:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                for _ in range(MAX_BATCHES):
                    stats = await sender.send_due()
                    total.add(stats)
                    if stats.claimed == 0:
                        break
        finally:
            await sender.close()
    except BaseException:
        await server.stop()
        raise
    if not keep_serving:
        await server.stop()
    return total


_COUNTS = ("planned", "sent", "later", "skipped", "other")


def per_rule(session: Session, now: datetime, rules: list[str]) -> dict[str, dict[str, int]]:
    """For each rule (`rules` listed even when they found nothing): planned (outbox rows) and
    how many were sent, are due later, were skipped as too late, or did not go out for
    another reason (failed, retried, cancelled)."""
    result: dict[str, dict[str, int]] = {rule: dict.fromkeys(_COUNTS, 0) for rule in rules}
    for rule, state, is_later, count in overview.outbox_by_rule(session, now):
        entry = result.setdefault(rule, dict.fromkeys(_COUNTS, 0))
        entry["planned"] += count
        if state == "sent":
            entry["sent"] += count
        elif state == "skipped":
            entry["skipped"] += count
        elif state == "due" and is_later:
            entry["later"] += count
        else:
            entry["other"] += count
    return result


def captured(server: DemoSmtpServer) -> list[dict[str, Any]]:
    """Each message the SMTP server kept: file, envelope recipients and subject."""
    found = []
    for message in server.messages:
        parsed = message_from_bytes(message.path.read_bytes(), policy=default_policy)
        found.append(
            {
                "file": str(message.path),
                "from": message.mail_from,
                "to": list(message.rcpt_tos),
                "subject": str(parsed.get("Subject", "")),
            }
        )
    return found


def summary(
    session: Session,
    settings: Settings,
    server: DemoSmtpServer,
    planned: planner.PlanReport,
    stats: SendStats,
) -> dict[str, Any]:
    """The demo's `sending` section (JSON-ready)."""
    now = datetime.now(UTC)
    names = [rule.name for rule in planner.configured_rules(settings).rules]
    rules = per_rule(session, now, names)
    messages = captured(server)
    by_template = overview.sent_templates(session)
    return {
        "planned": planned.planned,
        "sent": stats.sent,
        "failed": stats.failed,
        "retried": stats.retried,
        "rules": rules,
        "templates": dict(sorted(by_template.items())),
        "captured": {"directory": str(server.directory), "count": len(messages), "messages": messages},
    }
