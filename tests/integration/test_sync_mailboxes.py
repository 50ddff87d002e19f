"""One broken mailbox never stops the others: the daemon keeps syncing the good one and
records the broken one's error for `mailboxes status`."""

from __future__ import annotations

import asyncio
import time

import mailgen
import test_sync
from servers.dovecot import free_port
from sqlalchemy import select
from test_sync import ALICE, BOB, MailEnv

from mailcrm import daemon
from mailcrm.store.models import FolderCursor, Message
from mailcrm.sync.supervisor import MAILBOX_LEVEL, MailboxWorker

mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot

# How long the daemon may take to show progress or to stop: it normally needs a second or
# two, but parallel test workers and other jobs on the same cores can slow it tenfold.
LIVENESS_SECONDS = 120


def _connection_errors(env: MailEnv, mailbox: str) -> tuple[int, str | None]:
    with env.db.read() as session:
        row = session.execute(
            select(FolderCursor.errors, FolderCursor.last_error).where(
                FolderCursor.mailbox == mailbox, FolderCursor.folder == MAILBOX_LEVEL
            )
        ).first()
    return (row[0], row[1]) if row is not None else (0, None)


def test_the_daemon_syncs_the_good_mailbox_while_another_cannot_connect(mail_env: MailEnv) -> None:
    env = mail_env
    alice, bob = env.settings.salespeople
    assert bob.imap is not None
    dead = bob.imap.model_copy(update={"port": free_port()})  # nothing listens there
    settings = env.settings.model_copy(update={"salespeople": [alice, bob.model_copy(update={"imap": dead})]})

    async def scenario() -> list[MailboxWorker]:
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(env.db, settings, stop=stop, plan_and_send=False))
        try:
            await asyncio.to_thread(
                env.dovecot.deliver, env.alice, mailgen.make(sender="wang@golden.example", to=ALICE)
            )
            deadline = time.monotonic() + LIVENESS_SECONDS
            while env.count(Message) == 0 or _connection_errors(env, BOB)[0] == 0:
                assert time.monotonic() < deadline, (env.count(Message), _connection_errors(env, BOB))
                assert not task.done()
                await asyncio.sleep(0.05)
        finally:
            stop.set()
        return await asyncio.wait_for(task, timeout=LIVENESS_SECONDS)

    finished = {worker.mailbox.email: worker.state for worker in asyncio.run(scenario())}
    assert finished[ALICE].failures == 0 and finished[ALICE].synced == 1
    assert finished[BOB].failures >= 1 and not finished[BOB].connected
    errors, last_error = _connection_errors(env, BOB)
    assert errors >= 1 and last_error is not None and "connection refused" in last_error
    assert _connection_errors(env, ALICE) == (0, None)
