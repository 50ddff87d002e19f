"""An SMTP server that accepts the connection and never answers.

The account's `timeout_seconds` bounds every wait for the server; the attempt is
recorded and retried later (nothing was delivered), and the sender stays responsive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sendrunner import make_settings, plan, seed_customers
from servers.smtpd import BlackholeServer
from sqlalchemy import select

from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    with BlackholeServer() as server:
        yield server


def _sender(db: Database, settings: Settings, templates: Path, **kwargs: float) -> Sender:
    return Sender(
        db, sender_config(settings), TemplateRenderer(templates), worker_id="blackhole-test", **kwargs
    )


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())  # type: ignore[arg-type]


def test_the_production_default_timeout_is_bounded() -> None:
    account = make_settings(25).salespeople[0].smtp
    assert account is not None
    default = type(account).model_fields["timeout_seconds"].default
    assert 30 <= default <= 60


async def test_a_silent_server_times_out_and_the_row_is_retried(
    db: Database, blackhole: BlackholeServer, templates: Path
) -> None:
    ids = seed_customers(db, 3)
    plan(db, ids)
    settings = make_settings(blackhole.port, connections=1, timeout=0.5, retry_base_seconds=60)
    sender = _sender(db, settings, templates)
    try:
        stats = await asyncio.wait_for(sender.send_due(), timeout=30)
    finally:
        await sender.close()
    # One attempt timed out; the account then pauses, so the others wait without an attempt.
    assert (stats.retried, stats.deferred, stats.sent, stats.failed) == (1, 2, 0, 0)
    assert blackhole.accepted == 1
    rows = _rows(db)
    assert {r.state for r in rows} == {"due"}
    (tried,) = [r for r in rows if r.attempts == 1]
    assert "timed out" in (tried.last_error or "")
    assert f"127.0.0.1:{blackhole.port}" in (tried.last_error or "")
    assert tried.deadline_at is not None
    with db.read() as session:
        (attempt,) = outbox.history(session, tried.id)
    assert attempt.outcome == "retry" and attempt.code is None
    assert "timed out" in (attempt.reply or "")


async def test_stop_ends_the_sender_while_it_waits_for_a_silent_server(
    db: Database, blackhole: BlackholeServer, templates: Path
) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids)
    settings = make_settings(blackhole.port, connections=2, timeout=30)
    sender = _sender(db, settings, templates, stop_grace=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop, interval=0.1))
    await asyncio.to_thread(blackhole.wait_for_connections, 1)
    stop.set()
    await asyncio.wait_for(task, timeout=10)  # far less than the 30 s the server would be given
    rows = _rows(db)
    assert {r.state for r in rows} == {"due"}  # given back untouched: nothing was sent
    assert all(r.claimed_by is None for r in rows)
