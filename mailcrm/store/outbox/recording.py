"""The sender's hot path: many rows' starts and sends in one commit, in SQL run on the driver.

It takes the `Database`: the group commit is its own transaction, on a driver connection
it keeps between batches.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.exc import SQLAlchemyError

from mailcrm.errors import DatabaseError
from mailcrm.store.db import BUSY_TIMEOUT_MS, Database
from mailcrm.store.outbox.tables import ATTEMPT_SENT, SENT, _chunks
from mailcrm.store.outbox.views import ClaimedEmail, SentRecord
from mailcrm.store.types import utcnow


class _RawSql:
    """Hand-written SQL for the sender's hot path, run straight on the driver.

    SQLAlchemy's per-row work (parameter construction, type processing, insert-many
    rewriting) costs more than SQLite itself at a thousand rows a second, so
    `record` binds plain values here: timestamps go through the dialect's own
    DateTime processor, so they compare with the ones SQLAlchemy wrote.
    """

    def __init__(self, dialect: Any) -> None:
        self.postgres = dialect.name == "postgresql"
        self._stamp = DateTime().bind_processor(dialect)
        json = "CAST(? AS JSON)" if self.postgres else "?"
        self.start = (
            "UPDATE outbox SET attempt_started_at = ?, updated_at = ? "
            "WHERE state = 'claimed' AND claimed_by = ? AND id IN ({ids}) RETURNING id"
        )
        # By id only: with `state = 'sent'` in the WHERE, SQLite walks every sent row.
        self.states = "SELECT id, state FROM outbox WHERE id IN ({ids})"
        self.sent = self._q(
            "UPDATE outbox SET state = 'sent', sent_at = ?, sender = ?, attempts = attempts + 1, "
            "attempt_started_at = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ? "
            "WHERE id = ? AND state <> 'sent'"
        )
        self.message = self._q(
            "INSERT INTO message (message_id, thread_key, direction, mailbox, folder, from_address, "
            "subject, sent_at, snippet, is_auto_reply, is_bounce, is_malformed, created_at) "
            "VALUES (?, ?, 'out', ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING"
        )
        self.message_ids = "SELECT message_id, id FROM message WHERE message_id IN ({ids})"
        self.link = self._q(
            "INSERT INTO message_link (message_pk, customer_id, role) VALUES (?, ?, 'to') "
            "ON CONFLICT (message_pk, customer_id, role) DO NOTHING"
        )
        self.shown = (
            "SELECT customer_id, message_pk FROM timeline_event "
            "WHERE kind = 'email_out' AND message_pk IN ({ids})"
        )
        self.event = self._q(
            "INSERT INTO timeline_event (customer_id, kind, at, message_pk, payload) "
            f"VALUES (?, 'email_out', ?, ?, {json})"
        )
        self.attempt = self._q(
            "INSERT INTO outbox_attempt (outbox_id, at, outcome, code, reply) VALUES (?, ?, ?, ?, ?)"
        )

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def in_(self, sql: str, count: int) -> str:
        """`sql` with `{ids}` expanded to `count` placeholders."""
        return self._q(sql.format(ids=", ".join("?" * count)))

    def stamp(self, value: datetime) -> Any:
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return self._stamp(naive) if self._stamp else naive


_RAW: dict[str, _RawSql] = {}


def _raw(connection: Any) -> _RawSql:
    dialect = connection.dialect
    found = _RAW.get(dialect.name)
    if found is None:
        found = _RAW[dialect.name] = _RawSql(dialect)
    return found


def record(
    db: Database,
    *,
    sent: Sequence[SentRecord] = (),
    starting: Sequence[ClaimedEmail] = (),
    now: datetime | None = None,
) -> tuple[set[int], set[int]]:
    """One transaction for many rows (the sender's group commit).

    `sent` rows are recorded as sent (see `mark_sent`), then `starting` rows get
    `attempt_started_at` (see `mark_sending`). Both in one commit, so a sender that
    queues a connection's sent row before that connection's next start never has two
    rows of one connection inside a transaction. Returns the ids that may send their
    final "." and the ids recorded as sent for the first time.
    """
    with db.write() as session:
        connection = session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        return _record(driver, _raw(connection), sent, starting, now or utcnow())


def _record(
    driver: Any, sql: _RawSql, sent: Sequence[SentRecord], starting: Sequence[ClaimedEmail], moment: datetime
) -> tuple[set[int], set[int]]:
    cursor = driver.cursor()  # inside the caller's transaction
    try:
        first = _record_sent(cursor, sql, sent) if sent else set()
        started = _start(cursor, sql, starting, moment) if starting else set()
    finally:
        cursor.close()
    return started, first


class RecordConnection:
    """A connection of its own for the sender's group commits (`record` without a session).

    A session per commit costs more than the commit itself; this keeps one pooled
    driver connection and runs BEGIN/COMMIT on it. Not for concurrent use: the
    sender's `Recorder` commits one group at a time.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._driver: Any = None
        self._sql = _raw(db.engine)
        self._errors: Any = db.engine.dialect.loaded_dbapi.Error

    def record(
        self,
        *,
        sent: Sequence[SentRecord] = (),
        starting: Sequence[ClaimedEmail] = (),
        now: datetime | None = None,
    ) -> tuple[set[int], set[int]]:
        """As `record`; raises `DatabaseError` (the connection is dropped and reopened next time)."""
        try:
            if self._driver is None:
                self._driver = self._db.engine.raw_connection()
                if not self._sql.postgres:
                    self._driver.execute("PRAGMA busy_timeout = 0")  # `_begin_immediate` waits itself
            driver = self._driver
            if self._sql.postgres:
                found = _record(driver, self._sql, sent, starting, now or utcnow())
            else:
                _begin_immediate(driver)  # the write lock up front, as `Database.write`
                found = _record(driver, self._sql, sent, starting, now or utcnow())
            driver.commit()
            return found
        except (self._errors, SQLAlchemyError) as exc:  # SQLAlchemy's: the pool could not connect
            self.close()
            raise DatabaseError(f"database error on {self._db.display_url}: {exc}") from exc
        except BaseException:
            self.close()  # never leave the write lock held
            raise

    def close(self) -> None:
        """Give the connection back (rolled back if a transaction was left open)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(self._errors):
                driver.rollback()
                if not self._sql.postgres:  # back to the pool as the other connections are
                    driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            driver.close()


LOCK_POLL_FIRST = 0.0002
LOCK_POLL_MAX = 0.002
"""Seconds between tries for SQLite's write lock (growing from the first to the max)."""


def _begin_immediate(driver: Any) -> None:
    """`BEGIN IMMEDIATE`, trying again every fraction of a millisecond while another writer
    holds the lock, for at most `BUSY_TIMEOUT_MS`.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between tries, far longer than
    another sender process holds the lock for its group commit (about a millisecond),
    and every lane of this sender waits on this commit before its final ".".
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = LOCK_POLL_FIRST
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0)  # extended: SQLITE_BUSY in the low byte
            if code & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 1.5, LOCK_POLL_MAX)


def _start(cursor: Any, sql: _RawSql, rows: Sequence[ClaimedEmail], moment: datetime) -> set[int]:
    by_worker: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_worker[row.claimed_by].append(row.id)
    stamp = sql.stamp(moment)
    started: set[int] = set()
    for worker, ids in by_worker.items():
        for chunk in _chunks(ids):
            cursor.execute(sql.in_(sql.start, len(chunk)), (stamp, stamp, worker, *chunk))
            started.update(found[0] for found in cursor.fetchall())
    return started


def _select_in(cursor: Any, sql: _RawSql, query: str, keys: Sequence[Any]) -> list[Any]:
    found: list[Any] = []
    for chunk in _chunks(keys):
        cursor.execute(sql.in_(query, len(chunk)), tuple(chunk))
        found += cursor.fetchall()
    return found


def _record_sent(cursor: Any, sql: _RawSql, records: Sequence[SentRecord]) -> set[int]:
    """Set-based `mark_sent`: a fixed number of statements per group, not per row."""
    unique = list({r.row.id: r for r in records}.values())
    states = _select_in(cursor, sql, sql.states, [r.row.id for r in unique])
    already = {found[0] for found in states if found[1] == SENT}
    fresh = [r for r in unique if r.row.id not in already]
    stamps = {id(r): sql.stamp(r.at) for r in records}
    if fresh:
        cursor.executemany(sql.sent, [(stamps[id(r)], r.sender, stamps[id(r)], r.row.id) for r in fresh])
    cursor.executemany(
        sql.message,
        [
            (
                r.row.message_id,
                r.thread_key or r.row.message_id,
                r.sender,
                r.sender,
                r.subject,
                stamps[id(r)],
                r.snippet,
                False,
                False,
                False,
                stamps[id(r)],
            )
            for r in unique
        ],
    )
    all_new = cursor.rowcount == len(unique)  # else some were there (sync found them in Sent first)
    pks = dict(_select_in(cursor, sql, sql.message_ids, [r.row.message_id for r in unique]))
    cursor.executemany(sql.link, [(pks[r.row.message_id], r.row.customer_id) for r in unique])
    shown: set[tuple[int, int]] = set()
    if not all_new:  # a new message has no timeline event yet
        shown = {(e[0], e[1]) for e in _select_in(cursor, sql, sql.shown, sorted(set(pks.values())))}
    events = []
    for r in unique:
        key = (r.row.customer_id, pks[r.row.message_id])
        if key not in shown:
            shown.add(key)
            payload = {"rule": r.row.rule, "template": r.row.template, "outbox_id": r.row.id}
            events.append((key[0], stamps[id(r)], key[1], json.dumps(payload)))
    if events:
        cursor.executemany(sql.event, events)
    cursor.executemany(
        sql.attempt, [(r.row.id, stamps[id(r)], ATTEMPT_SENT, r.code, r.reply) for r in records]
    )
    return {r.row.id for r in fresh}
