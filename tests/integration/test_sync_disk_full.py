"""D4: the disk fills up in the middle of a sync (SQLite's `max_page_count` makes the
database file full). The sync stops with an error naming the database, the cursor does
not move past what was committed, and once there is room again the next sync stores
every message exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import mailgen
import pytest
import test_sync
from sqlalchemy import event, func, select
from test_sync import ALICE, MailEnv

from mailcrm.errors import MailcrmError
from mailcrm.store.models import FolderCursor, Message
from mailcrm.sync.supervisor import MailboxWorker, workers

mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot
TOTAL = 120
ROOM_PAGES = 8  # 32 KB more than the database before the sync: some of the batches fit
BATCH = 10


def _worker(env: MailEnv) -> MailboxWorker:
    """Alice's mailbox worker, committing every `BATCH` messages."""
    sync = env.settings.sync.model_copy(update={"batch_messages": BATCH})
    settings = env.settings.model_copy(update={"sync": sync})
    return next(w for w in workers(env.db, settings) if w.person.email == ALICE)


def _state(env: MailEnv) -> tuple[int, int, int]:
    """(stored messages, distinct Message-IDs, INBOX cursor last UID)."""
    with env.db.read() as session:
        stored = int(session.execute(select(func.count()).select_from(Message)).scalar_one())
        distinct = int(session.execute(select(func.count(func.distinct(Message.message_id)))).scalar_one())
        last_uid = session.execute(
            select(FolderCursor.last_uid).where(FolderCursor.mailbox == ALICE, FolderCursor.folder == "INBOX")
        ).scalar()
    return stored, distinct, int(last_uid or 0)


def test_a_full_disk_stops_the_sync_cleanly_and_loses_nothing(mail_env: MailEnv) -> None:
    env = mail_env
    for index in range(TOTAL):
        env.dovecot.deliver(
            env.alice,
            mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"question {index}"),
        )
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
