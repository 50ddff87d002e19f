"""The recorder's group commits: it waits for more writes, but never for a lane that cannot come."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sendrunner import plan, seed_customers
from servers.dovecot import free_port

from mailcrm.errors import DatabaseError
from mailcrm.send.recorder import Recorder
from mailcrm.store import outbox
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
