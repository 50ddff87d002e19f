"""The recorder's group commits: it waits for more writes, but never for a lane that cannot come."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sendrunner import plan, seed_customers
from servers.dovecot import free_port
from sqlalchemy import text

from mailcrm.errors import DatabaseError
from mailcrm.send.recorder import Recorder
from mailcrm.store import migrate, outbox
from mailcrm.store.db import Database
from mailcrm.store.types import utcnow

NEVER = 3600.0  # a linger no test waits out: only the triggers end it


def _counting(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the commits the recorder makes."""
    sizes: list[int] = []
    connection = recorder._connection
    record = connection.record

    def counted(**kwargs: Any) -> tuple[set[int], set[int]]:
        sizes.append(len(kwargs["sent"]) + len(kwargs["starting"]))
        return record(**kwargs)

    monkeypatch.setattr(connection, "record", counted)
    return sizes


async def test_starts_wait_for_the_other_lanes_then_commit_together(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan(db, seed_customers(db, 2))
    rows = outbox.claim(db, "w", 10, timedelta(minutes=5), utcnow())
    recorder = Recorder(db, utcnow, lanes=lambda: 2, linger=NEVER)
    sizes = _counting(recorder, monkeypatch)
    async with recorder:
        first = asyncio.ensure_future(recorder.starting(rows[0]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not first.done()  # the other lane may still queue its start
        second = asyncio.ensure_future(recorder.starting(rows[1]))
        assert await asyncio.gather(first, second) == [True, True]
    assert sizes == [2]


async def test_a_flush_ends_the_wait(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    plan(db, seed_customers(db, 1))
    (row,) = outbox.claim(db, "w", 10, timedelta(minutes=5), utcnow())
    recorder = Recorder(db, utcnow, lanes=lambda: 5, linger=NEVER)
    sizes = _counting(recorder, monkeypatch)
    async with recorder:
        start = asyncio.ensure_future(recorder.starting(row))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not start.done()
        await recorder.flush()
        assert start.done() and start.result() is True
    assert sizes == [1]


def test_a_database_that_refuses_connections_is_a_database_error() -> None:
    """The recorder retries `DatabaseError` and keeps its sends queued; a refused connection
    must be one too (whether the driver or SQLAlchemy's pool raises it), or they are dropped."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port('127.0.0.1')}/mailcrm"
    database = Database(url)
    connection = outbox.RecordConnection(database)
    try:
        with pytest.raises(DatabaseError, match=r"127\.0\.0\.1"):
            connection.record(sent=[], starting=[], now=utcnow())
    finally:
        connection.close()
        database.dispose()


def test_sqlite_group_commit_waits_for_another_writers_lock(tmp_path: Path) -> None:
    """Another process's write transaction holds the lock for a while: the commit waits
    for it (polling finely) instead of failing, and the pooled connection goes back with
    the usual busy timeout."""
    database = Database(f"sqlite:///{tmp_path}/mailcrm.db")
    migrate.upgrade(database)
    plan(database, seed_customers(database, 1))
    (row,) = outbox.claim(database, "w", 10, timedelta(minutes=5), utcnow())
    other = sqlite3.connect(tmp_path / "mailcrm.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, other.commit)
    connection = outbox.RecordConnection(database)
    try:
        began = time.monotonic()
        released.start()
        started, _ = connection.record(starting=[row], now=utcnow())
        waited = time.monotonic() - began
    finally:
        released.cancel()
        connection.close()
        other.close()
    assert started == {row.id} and 0.25 < waited < 5
    with database.read() as session:
        assert session.execute(text("PRAGMA busy_timeout")).scalar_one() == 10_000
    database.dispose()
