"""The store fails in the middle of a sync: the disk fills up (SQLite's
`max_page_count` makes the database file full), or PostgreSQL ends the sync's
connections and refuses new ones for a while. Either way the sync stops with an
error naming the database, the cursor does not move past what was committed, and the
next sync stores every message exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import mailgen
import psycopg
import pytest
import test_sync
from psycopg import sql
from servers.dovecot import DovecotServer
from servers.postgres import admin_conninfo
from sqlalchemy import event, func, select
from test_sync import ALICE, MailEnv, make_mail_env

from mailcrm.daemon import mailbox_workers
from mailcrm.errors import DatabaseError, MailcrmError
from mailcrm.store.db import Database
from mailcrm.store.models import FolderCursor, Message
from mailcrm.sync.supervisor import MailboxWorker

mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot
TOTAL = 120
ROOM_PAGES = 8  # 32 KB more than the database before the sync: some of the batches fit
BATCH = 10


def _worker(env: MailEnv) -> MailboxWorker:
    """Alice's mailbox worker, committing every `BATCH` messages."""
    sync = env.settings.sync.model_copy(update={"batch_messages": BATCH})
    settings = env.settings.model_copy(update={"sync": sync})
    return next(w for w in mailbox_workers(env.db, settings) if w.mailbox.email == ALICE)


def _state(env: MailEnv) -> tuple[int, int, int]:
    """(stored messages, distinct Message-IDs, INBOX cursor last UID)."""
    with env.db.read() as session:
        stored = int(session.execute(select(func.count()).select_from(Message)).scalar_one())
        distinct = int(session.execute(select(func.count(func.distinct(Message.message_id)))).scalar_one())
        last_uid = session.execute(
            select(FolderCursor.last_uid).where(FolderCursor.mailbox == ALICE, FolderCursor.folder == "INBOX")
        ).scalar()
    return stored, distinct, int(last_uid or 0)


def _deliver(env: MailEnv, count: int) -> None:
    for index in range(count):
        env.dovecot.deliver(
            env.alice,
            mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"question {index}"),
        )


def test_a_full_disk_stops_the_sync_cleanly_and_loses_nothing(mail_env: MailEnv) -> None:
    env = mail_env
    _deliver(env, TOTAL)
    with env.db.read() as session:
        pages = int(session.connection().exec_driver_sql("PRAGMA page_count").scalar_one())

    def limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + ROOM_PAGES}")

    event.listen(env.db.engine, "connect", limit)
    env.db.engine.dispose()  # every connection from now on has the limit
    try:
        with pytest.raises(MailcrmError) as failed:
            asyncio.run(_worker(env).sync_once())
    finally:
        event.remove(env.db.engine, "connect", limit)
        env.db.engine.dispose()
    message, hint = str(failed.value), failed.value.hint or ""
    assert "full" in message and "mailcrm.db" in message, message
    assert "free space" in hint and "continues from the last commit" in hint, hint
    stored, distinct, last_uid = _state(env)
    assert 0 < stored < TOTAL  # some batches were committed, then the disk filled up
    assert stored == distinct == last_uid  # the cursor is exactly at what was committed

    asyncio.run(_worker(env).sync_once())  # room again
    assert _state(env) == (TOTAL, TOTAL, TOTAL)


# -- PostgreSQL ends the sync's connections and refuses new ones for a moment ----------

OUTAGE_TOTAL = 400
OUTAGE_AFTER = 30  # stored messages before the outage starts
OUTAGE_SECONDS = 1.5


def _admin_run(statement: Any, *params: Any) -> None:
    with psycopg.connect(admin_conninfo(), connect_timeout=3, autocommit=True) as conn:
        conn.execute(statement, params or None)


def _outage(db: Database, application: str, stop: threading.Event, began: list[int]) -> None:
    """Once `OUTAGE_AFTER` messages are stored: refuse new connections to the test
    database, end the sync's, wait `OUTAGE_SECONDS`, allow connections again."""
    name = str(db.url.database)
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        with psycopg.connect(admin_conninfo(), dbname=name, connect_timeout=3, autocommit=True) as conn:
            stored = conn.execute("select count(*) from message").fetchone()
        if stored and stored[0] >= OUTAGE_AFTER:
            began.append(int(stored[0]))
            break
        time.sleep(0.005)
    else:
        return
    allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
    _admin_run(allow.format(sql.Identifier(name), sql.Literal(False)))
    try:
        _admin_run(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and application_name = %s and pid <> pg_backend_pid()",
            name,
            application,
        )
        time.sleep(OUTAGE_SECONDS)
    finally:
        _admin_run(allow.format(sql.Identifier(name), sql.Literal(True)))


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_gone_mid_sync_keeps_the_cursor_at_the_last_commit(
    db: Database, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = "mailcrm-outage-sync"
    sync_db = Database(db.url.update_query_dict({"application_name": application}).render_as_string(False))
    try:
        env = make_mail_env(sync_db, dovecot, monkeypatch)
        _deliver(env, OUTAGE_TOTAL)
        stop, began = threading.Event(), []
        outage = threading.Thread(target=_outage, args=(db, application, stop, began))
        outage.start()
        try:
            with pytest.raises(DatabaseError) as failed:
                asyncio.run(_worker(env).sync_once())
        finally:
            stop.set()
            outage.join(timeout=30)
        assert began, "the sync ended before the outage began"
        assert str(db.url.database) in str(failed.value)
        stored, distinct, last_uid = _state(env)
        assert began[0] <= stored < OUTAGE_TOTAL
        assert stored == distinct == last_uid  # the cursor is exactly at what was committed

        asyncio.run(_worker(env).sync_once())  # the database is back
        assert _state(env) == (OUTAGE_TOTAL, OUTAGE_TOTAL, OUTAGE_TOTAL)
    finally:
        sync_db.dispose()
