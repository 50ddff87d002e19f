"""Many concurrent writers on one SQLite file never see "database is locked".

Forty-eight threads, each with an engine of its own (as separate processes would have), are
released together by a barrier and write to one SQLite file at once, the kinds of
writes a daemon, its sender processes and the CLI make side by side:

* sync ingest: batches of new inbound messages (`mail.ingest`) with their cursor-like
  location rows;
* planner passes: outbox rows for overlapping occurrence keys (`outbox.insert_planned`),
  so several passes race for the same keys;
* sender: claim due rows, record the start before the final "." and the `sent` after
  the 250 (`outbox.claim`, `mark_sending`, `mark_sent`);
* web events: unsubscribes (`outbox.suppress`).

Every write must land (counted afterwards), none may fail, and each write's latency is
bounded well below the busy timeout.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import mailgen
import pytest
from sendrunner import OWNER, plan, seed_customers
from sqlalchemy import func, select

from mailcrm.domain.classify import classify
from mailcrm.domain.messages import parse_message
from mailcrm.store import migrate, outbox
from mailcrm.store.db import Database
from mailcrm.store.mail import IncomingMessage, ingest
from mailcrm.store.models import Message, OutboxItem, Suppression, table_of
from mailcrm.store.types import utcnow

CUSTOMERS = 240
INGESTERS, PLANNERS, SENDERS, WEB = 18, 10, 10, 10
ROUNDS = 12  # writes per thread
BATCH = 4  # messages per ingest batch
OCCURRENCES = 4  # planners share these keys: each pass writes 30 customers x one occurrence
MAX_WRITE_SECONDS = 7.5  # busy_timeout is 10 s; the first writes of the herd wait ~3 s here
MEDIAN_WRITE_SECONDS = 0.1
MAX_TOTAL_SECONDS = 20.0
_OUTBOX = table_of(OutboxItem)


def _count(db: Database, model: type, *where: Any) -> int:
    with db.read() as session:
        return int(
            session.execute(select(func.count()).select_from(table_of(model)).where(*where)).scalar_one()
        )


@pytest.mark.timeout(60)
def test_forty_eight_concurrent_writers_on_one_sqlite_file_never_see_locked(
    sqlite_url: str, tmp_path: Path
) -> None:
    setup = Database(sqlite_url)
    migrate.upgrade(setup)
    customer_ids = seed_customers(setup, CUSTOMERS)
    # Due rows for the senders to claim (the planners add more, not yet due).
    assert plan(setup, customer_ids, occurrence="purchase:0") == CUSTOMERS
    setup.dispose()

    errors: list[str] = []
    latencies: list[float] = []
    sent_by_senders: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(INGESTERS + PLANNERS + SENDERS + WEB)

    def timed(write: Callable[[], object]) -> object:
        began = time.monotonic()
        result = write()
        with lock:
            latencies.append(time.monotonic() - began)
        return result

    def ingester(n: int, db: Database) -> None:
        for r in range(ROUNDS):
            items = []
            for k in range(BATCH):
                raw = mailgen.make(
                    sender=f"c{(n * 7 + k) % CUSTOMERS}@example.org",
                    to=OWNER,
                    subject=f"Question {n}.{r}.{k}",
                    msgid=f"<in-{n}-{r}-{k}@example.org>",
                )
                parsed = parse_message(raw)
                items.append(IncomingMessage(parsed, classify(parsed), uid=r * BATCH + k + 1))

            def write(items: list[IncomingMessage] = items) -> None:
                with db.write() as session:
                    ingest(
                        session,
                        items,
                        mailbox=f"box{n}@acme.example",
                        folder="INBOX",
                        owner_id=None,
                        team_addresses=frozenset({OWNER}),
                        uidvalidity=1,
                    )

            timed(write)

    def planner(n: int, db: Database) -> None:
        for r in range(ROUNDS):
            start = ((n + r) % 4) * 30
            occurrence = f"purchase:{1 + (n + r) % OCCURRENCES}"
            due = utcnow() + timedelta(days=1)
            timed(partial(plan, db, customer_ids[start : start + 30], occurrence=occurrence, due_at=due))

    def sender(n: int, db: Database) -> None:
        worker = f"sender-{n}"
        sent = 0
        for _ in range(ROUNDS):
            claimed = timed(lambda: outbox.claim(db, worker, 3, timedelta(seconds=60), utcnow()))
            assert isinstance(claimed, list)
            for row in claimed:
                assert timed(partial(outbox.mark_sending, db, row))
                first = timed(
                    partial(
                        outbox.mark_sent,
                        db,
                        row,
                        sender=OWNER,
                        recipient="x@example.org",
                        subject="Thanks",
                        snippet="Thanks",
                    )
                )
                sent += bool(first)
        with lock:
            sent_by_senders.append(sent)

    def web(n: int, db: Database) -> None:
        for r in range(ROUNDS):

            def write(address: str = f"gone-{n}-{r}@example.net") -> None:
                with db.write() as session:
                    outbox.suppress(session, address, "unsubscribed")

            timed(write)

    def run(work: Callable[[int, Database], None], n: int) -> None:
        db = Database(sqlite_url)
        try:
            barrier.wait(timeout=30)
            work(n, db)
        except BaseException as exc:  # every failure is reported, not just the first
            with lock:
                errors.append(f"{work.__name__}-{n}: {exc!r}")
        finally:
            db.dispose()

    kinds = [(ingester, INGESTERS), (planner, PLANNERS), (sender, SENDERS), (web, WEB)]
    threads = [
        threading.Thread(target=run, args=(work, n), name=f"{work.__name__}-{n}")
        for work, count in kinds
        for n in range(count)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=MAX_TOTAL_SECONDS + 30 - (time.monotonic() - began))
    elapsed = time.monotonic() - began
    assert not [t.name for t in threads if t.is_alive()], "writers still running"

    assert [e for e in errors if "locked" in e.lower()] == []  # no "database is locked"
    assert errors == []
    assert elapsed < MAX_TOTAL_SECONDS, elapsed
    assert max(latencies) < MAX_WRITE_SECONDS, max(latencies)
    assert statistics.median(latencies) < MEDIAN_WRITE_SECONDS, statistics.median(latencies)

    db = Database(sqlite_url)
    try:
        inbound = table_of(Message).c.message_id.like("<in-%")
        assert _count(db, Message, inbound) == INGESTERS * ROUNDS * BATCH  # every ingested message
        # Every planned key once, however many passes raced for it.
        passes = {((n + r) % 4, (n + r) % OCCURRENCES) for n in range(PLANNERS) for r in range(ROUNDS)}
        assert len(passes) < PLANNERS * ROUNDS  # the passes overlap
        assert _count(db, OutboxItem) == CUSTOMERS + 30 * len(passes)
        assert _count(db, Suppression) == WEB * ROUNDS
        # Each claimed row was sent by exactly one sender, and recorded.
        sent = _count(db, OutboxItem, _OUTBOX.c.state == "sent")
        assert sent == sum(sent_by_senders) == min(CUSTOMERS, SENDERS * ROUNDS * 3)
        assert _count(db, OutboxItem, _OUTBOX.c.state == "claimed") == 0
    finally:
        db.dispose()
