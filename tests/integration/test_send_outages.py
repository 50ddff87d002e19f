"""Sender crashes and database outages around the final ".": nothing lost, nothing
sent twice beyond the ambiguous window.

The sender runs as a real subprocess (`tests/sendrunner.py`) with a short lease; the
SMTP sink runs in the test process on loopback and records every Message-ID it
accepted; PostgreSQL is the shared local server (only the test's own database is
touched).

* Killed while the reply is held: the sink has the whole message and holds its reply to
  the final "."; the sender gets `kill -9`; the sink then answers 250 into the dead
  socket. `sending.ambiguous: resend` (the default) sends that row once more with the
  same Message-ID; `hold` parks it as `delivery_unknown`. Either way the ambiguous
  attempt is in its history.
* Killed after the 250: `kill -9` right after the sink answered 250 to the final ".".
  Once the `sent` group commit is in, nothing is sent again; before it, the row is one
  of those the README allows one more copy (it had `attempt_started_at` set).
* A stalled lease: sender A holds claims and gets `kill -9` while sender B runs: B takes
  A's rows once A's lease has lapsed, not before; every row ends `sent`, each Message-ID
  once except rows A left inside the ambiguous window.
* PostgreSQL outage: the sender's PostgreSQL connections are terminated in the middle of
  a batch (`pg_terminate_backend`), and then the database refuses connections for a few
  seconds: the sender carries on after a bounded pause; nothing lost, nothing duplicated
  beyond the ambiguous-window rule.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sendrunner import (
    SenderProcesses,
    make_settings,
    open_rows,
    outbox_rows,
    plan,
    seed_customers,
    wait_until,
    write_templates,
)
from servers.postgres import admin_conninfo
from servers.smtpd import DelayingHandler, DotHoldingHandler, GatedHandler, RecordingSMTPServer
from sqlalchemy import select

from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxAttempt, table_of
from mailcrm.store.outbox import ATTEMPT_AMBIGUOUS, ATTEMPT_SENT
from mailcrm.store.types import utcnow

LEASE = 2.0
_ATTEMPT = table_of(OutboxAttempt)


@pytest.fixture
def senders(tmp_path: Path) -> Iterator[Callable[..., SenderProcesses]]:
    made: list[SenderProcesses] = []
    templates = write_templates(tmp_path / "templates")

    def make(db: Database, port: int, db_url: str | None = None) -> SenderProcesses:
        url = db_url or db.url.render_as_string(hide_password=False)
        processes = SenderProcesses(url, port, templates, lease=LEASE)
        made.append(processes)
        return processes

    yield make
    for processes in made:
        processes.stop_all()


def _history(db: Database, outbox_id: int) -> list[tuple[str, str]]:
    with db.read() as session:
        return [(a.outcome, a.reply or "") for a in outbox.history(session, outbox_id)]


def _ambiguous_history(db: Database) -> set[int]:
    """Outbox ids with an ambiguous attempt in their history."""
    with db.read() as session:
        query = select(_ATTEMPT.c.outbox_id).where(_ATTEMPT.c.outcome == ATTEMPT_AMBIGUOUS)
        return set(session.execute(query).scalars())


def _sent_at(db: Database) -> dict[int, Any]:
    """The time of each row's first `sent` attempt."""
    with db.read() as session:
        query = select(_ATTEMPT.c.outbox_id, _ATTEMPT.c.at).where(_ATTEMPT.c.outcome == ATTEMPT_SENT)
        found: dict[int, Any] = {}
        for outbox_id, at in session.execute(query):
            found[outbox_id] = min(at, found.get(outbox_id, at))
        return found


def _naive(moment: Any) -> Any:
    return moment.replace(tzinfo=None) if moment is not None else None


# -- killed while the server holds its reply to the final "." ------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_kill_while_the_reply_to_the_dot_is_held_resends_or_holds_by_policy(
    db: Database, senders: Any, policy: str
) -> None:
    ids = seed_customers(db, 8)
    assert plan(db, ids) == 8
    # The 4th message is stored at its final "." and its 250 waits for the gate (one
    # connection: exactly one such transaction).
    handler = DotHoldingHandler(hold_after=3)
    with RecordingSMTPServer(handler) as sink:
        processes = senders(db, sink.port)
        first = processes.start("first", "--connections", "1", "--ambiguous", policy)
        try:
            wait_until(lambda: handler.held >= 1 or first.poll() is not None, 20, "the held final dot")
            assert first.poll() is None, first.communicate()[1][-3000:]
            processes.kill(first)
        finally:
            handler.gate.set()  # the 250 goes into a dead socket
        received_at_kill = [m.message_id for m in sink.messages]
        assert len(received_at_kill) == 4

        at_kill = outbox_rows(db)
        window = [r for r in at_kill if r.state == "claimed" and r.attempt_started_at is not None]
        assert len(window) == 1, [(r.id, r.state, r.attempt_started_at) for r in at_kill]
        (held,) = window
        assert held.message_id == received_at_kill[-1]  # the server has the held message
        assert sum(r.state == "sent" for r in at_kill) == 3  # the earlier ones were recorded

        second = processes.start(
            "second", "--connections", "1", "--ambiguous", policy, "--until-done", "--max-seconds", "30"
        )
        processes.finish(second, timeout=40)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    by_id = {r.id: r for r in rows}
    after = by_id[held.id]
    assert open_rows(db) == 0
    assert after.ambiguous_attempts == 1
    history = _history(db, held.id)
    assert history[0][0] == ATTEMPT_AMBIGUOUS  # the unknown outcome is on record
    assert _ambiguous_history(db) == {held.id}  # and only for the held row
    others = [r for r in rows if r.id != held.id]
    assert all(r.state == "sent" for r in others)
    assert all(received[r.message_id] == 1 for r in others)
    assert set(received) == {r.message_id for r in rows}  # every Message-ID is one of ours
    if policy == "resend":
        # Sent once more, with the same Message-ID, and not a third time.
        assert after.state == "sent"
        assert received[held.message_id] == 2
        assert [outcome for outcome, _ in history] == [ATTEMPT_AMBIGUOUS, ATTEMPT_SENT]
    else:
        assert after.state == "delivery_unknown"
        assert received[held.message_id] == 1  # not resent
        assert [outcome for outcome, _ in history] == [ATTEMPT_AMBIGUOUS]
        with db.read() as session:
            assert outbox.count_by_state(session).get("delivery_unknown") == 1  # what `status` shows


# -- killed right after the 250 to the final "." -------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("wait_for_commit", [False, True], ids=["at-once", "after-sent-commit"])
def test_kill_right_after_the_250_sends_no_second_copy_once_committed(
    db: Database, senders: Any, wait_for_commit: bool
) -> None:
    ids = seed_customers(db, 8)
    assert plan(db, ids) == 8
    # One connection: once the server has answered 250 to the 4th message, the sender's
    # next command (MAIL FROM of the 5th) is held, so the kill comes right after the 250.
    handler = GatedHandler("MAIL", hold_after=4)
    with RecordingSMTPServer(handler) as sink:
        processes = senders(db, sink.port)
        first = processes.start("first", "--connections", "1")
        try:
            wait_until(lambda: handler.held >= 1 or first.poll() is not None, 20, "the next MAIL")
            assert first.poll() is None, first.communicate()[1][-3000:]
            last = sink.messages[-1].message_id
            if wait_for_commit:
                wait_until(
                    lambda: any(r.message_id == last and r.state == "sent" for r in outbox_rows(db)),
                    10,
                    "the sent commit",
                )
            processes.kill(first)
        finally:
            handler.gate.set()
        at_kill = {r.message_id: r for r in outbox_rows(db)}
        assert len(sink.messages) == 4
        in_window = {mid for mid, r in at_kill.items() if r.state == "claimed" and r.attempt_started_at}
        assert in_window <= {last}  # one connection: at most the row just answered
        if wait_for_commit:
            assert at_kill[last].state == "sent" and not in_window

        second = processes.start("second", "--connections", "1", "--until-done", "--max-seconds", "30")
        processes.finish(second, timeout=40)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert all(r.state == "sent" for r in rows)
    assert set(received) == {r.message_id for r in rows}
    duplicates = {mid for mid, n in received.items() if n > 1}
    # The README's promise: a second copy, with the same Message-ID, only of a row that
    # was inside its transaction (attempt_started_at set) at the kill; none once `sent`
    # was committed.
    assert duplicates <= in_window
    assert all(n <= 2 for n in received.values())
    if at_kill[last].state == "sent":
        assert received[last] == 1
        assert _ambiguous_history(db) == set()
    else:  # killed before the `sent` commit: resent once (`ambiguous: resend`), same Message-ID
        assert received[last] == 2
        assert {r.id for r in rows if r.message_id == last} == _ambiguous_history(db)


# -- a killed sender's claims are taken over after its lease -----------------------------


@pytest.mark.timeout(60)
def test_a_killed_senders_rows_are_taken_over_after_its_lease(db: Database, senders: Any) -> None:
    ids = seed_customers(db, 80)
    assert plan(db, ids) == 80
    with RecordingSMTPServer(DelayingHandler(0.1)) as sink:
        processes = senders(db, sink.port)
        common = ("--connections", "2", "--batch", "20")
        a = processes.start("A", *common)
        b = processes.start("B", *common, "--until-done", "--max-seconds", "40")

        def claims(worker: str) -> list[Any]:
            return [r for r in outbox_rows(db) if r.state == "claimed" and r.claimed_by == worker]

        wait_until(
            lambda: (
                (len(claims("A")) >= 8 and len(claims("B")) >= 1 and len(sink.messages) >= 4)
                or a.poll() is not None
                or b.poll() is not None
            ),
            30,
            "both senders at work",
        )
        assert a.poll() is None, a.communicate()[1][-3000:]
        assert b.poll() is None, b.communicate()[1][-3000:]
        processes.kill(a)
        killed_at = utcnow()
        left = claims("A")
        assert len(left) >= 5, len(left)  # A died holding unsent rows
        window = {r.id for r in left if r.attempt_started_at is not None}
        assert len(window) <= 2  # at most one per open connection
        lapse = max(_naive(r.claimed_until) for r in left)
        assert lapse <= _naive(killed_at) + timedelta(seconds=2 * LEASE)

        result = processes.finish(b, timeout=50)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert [r.state for r in rows if r.state != "sent"] == []
    assert set(received) == {r.message_id for r in rows}
    left_ids = {r.id for r in left}
    # B sent A's rows, and only after A's lease on them had lapsed.
    sent_at = _sent_at(db)
    for row in left:
        assert _naive(sent_at[row.id]) >= _naive(row.claimed_until), (row.id, sent_at[row.id])
    assert result["sent"] >= len(left_ids - window)
    # Each Message-ID once, except rows A left inside the ambiguous window (at most twice).
    too_many = {r.id: received[r.message_id] for r in rows if received[r.message_id] > 1 + (r.id in window)}
    assert too_many == {}
    assert _ambiguous_history(db) <= window


# -- PostgreSQL connections terminated, then refused, in the middle of a batch ------------

OUTAGE = 3.0  # seconds the database refuses connections
RESUME_WITHIN = 12.0  # the sender's pause after failures: 1, 2, 4 s (+ the recorder's 1 + 2 s)


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(admin_conninfo(), connect_timeout=3, autocommit=True)


def _terminate(database: str, application: str) -> int:
    """`pg_terminate_backend` for every connection of `application` on `database`."""
    with _admin() as conn:
        found = conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and application_name = %s and pid <> pg_backend_pid()",
            (database, application),
        ).fetchall()
    return sum(1 for (ok,) in found if ok)


def _allow_connections(database: str, allow: bool) -> None:
    with _admin() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allow)
            )
        )


@pytest.mark.postgres
@pytest.mark.timeout(90)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_connections_killed_mid_batch_lose_and_duplicate_nothing(db: Database, senders: Any) -> None:
    ids = seed_customers(db, 300)
    assert plan(db, ids) == 300
    database = str(db.url.database)
    application = "mailcrm-outage-sender"
    url = db.url.update_query_dict({"application_name": application})
    with RecordingSMTPServer(DelayingHandler(0.02)) as sink:
        processes = senders(db, sink.port, url.render_as_string(hide_password=False))
        sender = processes.start(
            "outage", "--connections", "2", "--until-done", "--db-outages", "--max-seconds", "60"
        )

        def delivered_at_least(count: int) -> Callable[[], bool]:
            return lambda: len(sink.messages) >= count or sender.poll() is not None

        # 1. Every connection of the sender is terminated in the middle of the batch.
        wait_until(delivered_at_least(40), 20, "40 deliveries")
        assert sender.poll() is None, sender.communicate()[1][-3000:]
        assert _terminate(database, application) >= 1
        before = len(sink.messages)
        started = time.monotonic()
        wait_until(delivered_at_least(before + 20), RESUME_WITHIN, "sending after the terminate")
        assert sender.poll() is None, sender.communicate()[1][-3000:]
        first_pause = time.monotonic() - started

        # 2. Terminated again, and the database refuses new connections for OUTAGE seconds.
        _allow_connections(database, False)
        try:
            assert _terminate(database, application) >= 1
            db.dispose()  # the test's own pooled connections went too
            time.sleep(OUTAGE)
        finally:
            _allow_connections(database, True)
        before = len(sink.messages)
        started = time.monotonic()
        wait_until(delivered_at_least(before + 20), RESUME_WITHIN, "sending after the outage")
        assert sender.poll() is None, sender.communicate()[1][-3000:]
        second_pause = time.monotonic() - started

        result = processes.finish(sender, timeout=70)
        received = Counter(m.message_id for m in sink.messages)

    rows = outbox_rows(db)
    assert [r.state for r in rows if r.state != "sent"] == []  # nothing lost, nothing stuck
    assert set(received) == {r.message_id for r in rows}
    ambiguous = _ambiguous_history(db) | {r.id for r in rows if r.ambiguous_attempts}
    too_many = {
        r.id: received[r.message_id] for r in rows if received[r.message_id] > 1 + (r.id in ambiguous)
    }
    assert too_many == {}
    assert first_pause < RESUME_WITHIN and second_pause < RESUME_WITHIN
    assert result["sent"] >= 300 - len(ambiguous)


@pytest.mark.timeout(40)
async def test_a_sender_cancelled_with_everything_else_ends(db: Database, tmp_path: Path) -> None:
    """When the main coroutine fails (e.g. on a database error), `asyncio.run` cancels every
    task at once, the sender's lanes, heartbeat and group-commit task included: the sender
    must end then, not wait forever for a commit nobody will make."""
    assert plan(db, seed_customers(db, 200)) == 200
    with RecordingSMTPServer(DelayingHandler(0.02)) as sink:
        settings = make_settings(
            sink.port, connections=2, lease_seconds=LEASE, batch_size=50, frequency_cap=None
        )
        templates = TemplateRenderer(write_templates(tmp_path / "templates"))
        sender = Sender(db, sender_config(settings), templates, worker_id="cancelled")
        task = asyncio.create_task(sender.run(asyncio.Event(), interval=0.2))
        await asyncio.to_thread(sink.handler.wait_for, 20, 20.0)
        assert not task.done() and len(sink.messages) >= 20  # in the middle of a batch
        for other in asyncio.all_tasks():
            if other is not asyncio.current_task():
                other.cancel()  # what asyncio.run does when its main coroutine raises
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the cancelled sender did not end within 10 s"
        assert task.cancelled()
    rows = outbox_rows(db)
    # Nothing sent twice; rows not yet recorded are claimed and lapse after the lease.
    received = Counter(m.message_id for m in sink.messages)
    assert max(received.values()) == 1
    assert {r.state for r in rows} <= {"sent", "due", "claimed"}
