"""Sender processes killed with SIGKILL before DATA, and over and over at random moments.

The sender runs as a real subprocess (`tests/sendrunner.py`) with a short lease; the
SMTP sink runs in the test process on loopback and records every Message-ID it
accepted. A transaction killed before its final "." must never yield a second copy;
only a row recorded as ambiguous (killed inside the final-dot window) may arrive twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sendrunner import (
    SenderProcesses,
    open_rows,
    outbox_rows,
    plan,
    seed_customers,
    wait_until,
    write_templates,
)
from servers.smtpd import DelayingHandler, GatedHandler, RecordingSMTPServer
from sqlalchemy import select

from mailcrm.store.db import Database
from mailcrm.store.models import OutboxAttempt, table_of
from mailcrm.store.outbox import ATTEMPT_AMBIGUOUS
from mailcrm.store.types import utcnow

CONNECTIONS = 2
LEASE = 2.0
FINAL_STATES = {"sent", "failed", "delivery_unknown", "skipped"}
_ATTEMPT = table_of(OutboxAttempt)


@pytest.fixture
def senders(tmp_path: Path) -> Iterator[Callable[[Database, int], SenderProcesses]]:
    made: list[SenderProcesses] = []
    templates = write_templates(tmp_path / "templates")

    def make(db: Database, port: int) -> SenderProcesses:
        processes = SenderProcesses(
            db.url.render_as_string(hide_password=False), port, templates, lease=LEASE
        )
        made.append(processes)
        return processes

    yield make
    for processes in made:
        processes.stop_all()


def _settled(db: Database, delivered: int) -> bool:
    """Every delivered row is recorded `sent` and no claimed row is past its final dot."""
    rows = outbox_rows(db)
    started = [r for r in rows if r.state == "claimed" and r.attempt_started_at is not None]
    return not started and sum(r.state == "sent" for r in rows) == delivered


def _ambiguous_history(db: Database) -> set[int]:
    """Outbox ids with an ambiguous attempt in their history."""
    with db.read() as session:
        query = select(_ATTEMPT.c.outbox_id).where(_ATTEMPT.c.outcome == ATTEMPT_AMBIGUOUS)
        return set(session.execute(query).scalars())


@pytest.mark.timeout(90)
def test_kill_while_held_at_rcpt_sends_nothing_twice(db: Database, senders: Any) -> None:
    ids = seed_customers(db, 40)
    assert plan(db, ids) == 40
    handler = GatedHandler("RCPT", hold_after=10)
    with RecordingSMTPServer(handler) as sink:
        processes = senders(db, sink.port)
        first = processes.start("first", "--connections", str(CONNECTIONS))
        try:
            wait_until(lambda: handler.held >= CONNECTIONS or first.poll() is not None, 30, "held RCPTs")
            assert first.poll() is None, first.communicate()[1][-3000:]
            # Let the deliveries before the gate be recorded, so only the RCPT holds are open.
            wait_until(lambda: _settled(db, len(sink.messages)), 15, "recorded deliveries")
            processes.kill(first)
            killed_at = utcnow()
        finally:
            handler.gate.set()

        at_kill = outbox_rows(db)
        held = [r for r in at_kill if r.state == "claimed"]
        assert held, "the killed sender held no claim"
        # Every open transaction waited at RCPT: none had reached the final dot.
        assert all(r.attempt_started_at is None for r in held)
        assert all(r.claimed_until is not None for r in held)
        delivered_before = Counter(m.message_id for m in sink.messages)
        assert 10 <= len(delivered_before) < 40

        # The held claims lapse after the lease; then they are due again for anyone.
        lapse = max(r.claimed_until for r in held)
        assert lapse <= killed_at + timedelta(seconds=2 * LEASE)
        second = processes.start(
            "second", "--connections", str(CONNECTIONS), "--until-done", "--max-seconds", "60"
        )
        processes.finish(second, timeout=75)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert [r.state for r in rows if r.state != "sent"] == []
    assert set(received) == {r.message_id for r in rows}
    assert max(received.values()) == 1  # N=0: no key delivered twice
    assert all(r.ambiguous_attempts == 0 for r in rows)
    assert _ambiguous_history(db) == set()
    held_ids = {r.id for r in held}
    assert all(received[r.message_id] == 1 for r in rows if r.id in held_ids)  # held rows: sent once


@pytest.mark.timeout(120)
def test_kill_loop_then_run_to_completion_sends_each_row_once(db: Database, senders: Any) -> None:
    rng = random.Random(20261123)
    ids = seed_customers(db, 200)
    assert plan(db, ids) == 200
    kills = rng.randint(5, 8)
    with RecordingSMTPServer(DelayingHandler(0.02)) as sink:
        processes = senders(db, sink.port)
        killed = 0
        for round_ in range(kills):
            if open_rows(db) == 0:
                break
            process = processes.start(f"loop-{round_}", "--connections", str(CONNECTIONS), "--until-done")
            target = len(sink.messages) + rng.randint(5, 25)
            wait_until(
                lambda target=target, process=process: (
                    len(sink.messages) >= target or process.poll() is not None
                ),
                20,
                f"round {round_}",
            )
            time.sleep(rng.uniform(0.0, 0.05))
            if process.poll() is None:
                killed += 1
            processes.kill(process)
        assert killed >= 3, killed
        final = processes.start(
            "final", "--connections", str(CONNECTIONS), "--until-done", "--max-seconds", "60"
        )
        processes.finish(final, timeout=75)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert len(rows) == 200
    assert [r.state for r in rows if r.state not in FINAL_STATES] == []  # none due, none claimed
    ambiguous = _ambiguous_history(db) | {r.id for r in rows if r.ambiguous_attempts}
    too_many = {
        r.message_id: received[r.message_id] for r in rows if received[r.message_id] > 1 + (r.id in ambiguous)
    }
    assert too_many == {}
    assert set(received) <= {r.message_id for r in rows}
    assert all(received[r.message_id] >= 1 for r in rows if r.state == "sent")
