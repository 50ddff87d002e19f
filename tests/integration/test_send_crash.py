"""Sender processes killed with SIGKILL mid-batch, and several senders on one database.

The sender runs as a real subprocess (`tests/sendrunner.py`); the SMTP sink runs in the
test process and records every Message-ID it accepted. After a `kill -9` and a
restart, every row must be delivered; a copy may be duplicated only if its row was
inside an SMTP transaction at the kill (`attempt_started_at` set, at most one per
open connection), and then with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sendrunner import SenderProcesses, outbox_rows, plan, seed_customers, wait_until, write_templates
from servers.smtpd import RecordingHandler, RecordingSMTPServer

from mailcrm.store.db import Database

CONNECTIONS = 2


class HoldingSink(RecordingHandler):
    """Records each message, then holds its reply once `hold_after` messages have arrived.

    The held transactions are exactly the ambiguous window: the server has the
    message, the client has not heard so. The test kills the sender there, then
    opens `gate` (the replies go to a dead socket).
    """

    def __init__(self, hold_after: int) -> None:
        super().__init__()
        self.hold_after = hold_after
        self.gate = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) >= self.hold_after:
            await asyncio.to_thread(self.gate.wait, 30)
        return reply


class Runners(SenderProcesses):
    """Sender subprocesses with this module's connection count; each is stopped by its PID."""

    def start(self, worker: str, *extra: str) -> subprocess.Popen[str]:
        return super().start(worker, "--connections", str(CONNECTIONS), *extra)


@pytest.fixture
def runners_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Runners] = []
    templates = write_templates(tmp_path / "templates")

    def make(db: Database, port: int) -> Runners:
        runners = Runners(db.url.render_as_string(hide_password=False), port, templates)
        made.append(runners)
        return runners

    yield make
    for runners in made:
        runners.stop_all()


def test_kill_minus_9_mid_batch_then_restart(db: Database, runners_factory: Any) -> None:
    ids = seed_customers(db, 300)
    assert plan(db, ids) == 300
    handler = HoldingSink(hold_after=100)
    with RecordingSMTPServer(handler) as sink:
        runners = runners_factory(db, sink.port)
        first = runners.start("first")
        try:
            wait_until(lambda: len(sink.messages) >= 100 or first.poll() is not None, 60, "100 deliveries")
            time.sleep(0.3)  # let the other connection reach its final dot too
            assert first.poll() is None, first.communicate()[1][-3000:]
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            handler.gate.set()

        at_kill = outbox_rows(db)
        in_transaction = {r.message_id for r in at_kill if r.state == "claimed" and r.attempt_started_at}
        assert 1 <= len(in_transaction) <= CONNECTIONS  # at most one per open connection
        delivered_before = Counter(m.message_id for m in sink.messages)
        assert 100 <= len(delivered_before) < 300

        second = runners.start("second", "--until-done", "--max-seconds", "90")
        result = runners.finish(second, timeout=120)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert [r.state for r in rows if r.state != "sent"] == []  # nothing lost, nothing left claimed
    assert set(received) == {r.message_id for r in rows}
    duplicates = {mid for mid, n in received.items() if n > 1}
    # Exactly the held transactions were sent twice: same Message-ID, one extra copy each.
    assert duplicates == in_transaction & set(delivered_before), (duplicates, in_transaction)
    assert duplicates and all(received[mid] == 2 for mid in duplicates)
    assert {r.message_id for r in rows if r.ambiguous_attempts} == in_transaction
    assert result["sent"] >= 300 - len(delivered_before)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_three_senders_on_one_postgres_database(db: Database, runners_factory: Any) -> None:
    ids = seed_customers(db, 3000)
    assert plan(db, ids) == 3000
    with RecordingSMTPServer() as sink:
        runners = runners_factory(db, sink.port)
        processes = [
            runners.start(f"sender-{n}", "--until-done", "--max-seconds", "150", "--batch", "100")
            for n in range(3)
        ]
        results = [runners.finish(process, timeout=180) for process in processes]
        received = Counter(m.message_id for m in sink.messages)
    rows = outbox_rows(db)
    assert len(rows) == 3000 and all(r.state == "sent" for r in rows)
    assert set(received) == {r.message_id for r in rows}
    assert max(received.values()) == 1  # each Message-ID exactly once
    assert sum(r["sent"] for r in results) == 3000
    assert sum(1 for r in results if r["sent"] > 0) >= 2, results


class SlowSink(RecordingHandler):
    """Takes a while to answer each message, so a stop always finds transactions in flight."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.2)
        return await super().handle_DATA(server, session, envelope)


def test_sigterm_finishes_in_flight_and_gives_the_rest_back(db: Database, runners_factory: Any) -> None:
    """On SIGTERM the process exits within 10 s, nothing stays claimed, nothing is sent twice."""
    ids = seed_customers(db, 100)
    plan(db, ids)
    with RecordingSMTPServer(SlowSink()) as sink:
        runners = runners_factory(db, sink.port)
        process = runners.start("stopping")
        wait_until(lambda: len(sink.messages) >= 5 or process.poll() is not None, 60, "5 deliveries")
        assert process.poll() is None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        runners.finish(process, timeout=15)
        assert time.monotonic() - started < 10
        received = Counter(m.message_id for m in sink.messages)
    rows = outbox_rows(db)
    assert {r.state for r in rows} <= {"sent", "due"}
    assert {r.message_id for r in rows if r.state == "sent"} == set(received)
    assert max(received.values()) == 1
    assert 5 <= len(received) < 100
