"""The connection is cut in the middle of a message body (a ``BODY[]`` literal).
The sync fails with a clean disconnect, stores no half message, leaves the cursor on
what was committed, and the next sync stores every message exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import mailgen
import pytest
import test_sync
from servers.proxy import CuttingProxy
from sqlalchemy import select
from test_sync import ALICE, MailEnv, _account

from mailcrm.daemon import mailbox_workers
from mailcrm.imap.errors import ImapConnectionError
from mailcrm.settings import SalespersonSettings, SyncSettings
from mailcrm.store.models import FolderCursor, Message, MessageLocation, TimelineEvent
from mailcrm.sync.supervisor import MailboxWorker

mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot
TOTAL = 10
BATCH = 3


@pytest.fixture
def proxy(mail_env: MailEnv) -> Iterator[CuttingProxy]:
    with CuttingProxy(mail_env.dovecot.host, mail_env.dovecot.port) as running:
        yield running


def _worker_through(env: MailEnv, proxy: CuttingProxy) -> MailboxWorker:
    account = _account(env.alice, "TEST_ALICE_PW").model_copy(update={"port": proxy.port})
    settings = env.settings.model_copy(
        update={
            "salespeople": [SalespersonSettings(name="Alice", email=ALICE, imap=account)],
            "sync": SyncSettings(poll_seconds=30, reconnect_max_seconds=1.0, batch_messages=BATCH),
        }
    )
    [worker] = mailbox_workers(env.db, settings)
    return worker


def _stored(env: MailEnv) -> tuple[list[str], int]:
    with env.db.read() as session:
        subjects = sorted(session.execute(select(Message.subject)).scalars(), key=lambda s: int(s[5:]))
        last_uid = session.execute(
            select(FolderCursor.last_uid).where(FolderCursor.mailbox == ALICE, FolderCursor.folder == "INBOX")
        ).scalar()
    return subjects, int(last_uid or 0)


def test_a_cut_inside_a_message_body_stores_no_half_message_and_loses_nothing(
    mail_env: MailEnv, proxy: CuttingProxy
) -> None:
    env = mail_env
    body = "".join(f"line {n:05d} of a long message body\n" for n in range(2000))  # ~70 KB
    for index in range(TOTAL):
        env.dovecot.deliver(
            env.alice,
            mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"bulk {index}", body=body),
        )
    worker = _worker_through(env, proxy)
    # The 7th body is the first of the third batch: batches 1 and 2 are whole before it.
    cut_message = 2 * BATCH + 1
    proxy.cut_inside(b"BODY[] {", occurrence=cut_message, after=20_000, hold=True)

    async def interrupted() -> None:
        task = asyncio.create_task(worker.sync_once())
        try:
            deadline = time.monotonic() + 30
            while not proxy.wait_holding(0) or env.count(Message) < 2 * BATCH:
                assert time.monotonic() < deadline, f"stored {env.count(Message)}; cut reached: {proxy.cuts}"
                assert not task.done(), task
                await asyncio.sleep(0.02)
        finally:
            proxy.release()
        with pytest.raises(ImapConnectionError, match="connection"):
            await asyncio.wait_for(task, timeout=30)

    asyncio.run(interrupted())
    assert proxy.cuts == 1
    subjects, last_uid = _stored(env)
    # Everything before the cut, nothing from the batch it broke: no half message.
    assert subjects == [f"bulk {i}" for i in range(2 * BATCH)]
    assert last_uid == 2 * BATCH  # the cursor is on what was committed, not past it
    assert env.count(MessageLocation) == 2 * BATCH

    worker = _worker_through(env, proxy)  # the cut was one-shot: the next sync goes through
    asyncio.run(worker.sync_once())
    subjects, last_uid = _stored(env)
    assert subjects == [f"bulk {i}" for i in range(TOTAL)]  # each exactly once
    assert last_uid == TOTAL
    assert env.count(TimelineEvent) == TOTAL
    assert env.count(MessageLocation) == TOTAL
