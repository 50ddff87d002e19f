"""A mailbox whose password cannot be read (variable unset) is a person's job to fix:
the daemon says so in one line naming the variable, records it for `mailboxes status`
and retries after `sync.auth_retry_seconds`, never as an "unexpected error" with a
traceback retried every second."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from mailcrm.daemon import mailbox_workers
from mailcrm.settings import ImapAccount, SalespersonSettings, Settings, SyncSettings
from mailcrm.store import migrate
from mailcrm.store.db import Database
from mailcrm.store.models import FolderCursor
from mailcrm.sync.supervisor import MAILBOX_LEVEL

ALICE = "alice@acme.example"
UNSET = "TEST_MISSING_SECRET_PW"


@pytest.mark.asyncio
async def test_an_unreadable_secret_is_one_line_and_a_slow_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    db = Database(f"sqlite:///{tmp_path / 'mailcrm.db'}")
    migrate.upgrade(db)
    account = ImapAccount(host="127.0.0.1", port=1, security="plain", username="alice", password_env=UNSET)
    settings = Settings(
        salespeople=[SalespersonSettings(name="Alice", email=ALICE, imap=account)],
        sync=SyncSettings(poll_seconds=30, reconnect_max_seconds=0.2, auth_retry_seconds=900),
    )
    (worker,) = mailbox_workers(db, settings)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="mailcrm")
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(1.5)  # the quick backoff (0.2 s) would have retried several times by now
    stop.set()
    await asyncio.wait_for(task, timeout=15)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].exc_info is None
    assert f"environment variable {UNSET} is not set" in errors[0].getMessage()
    assert "retrying in 900 s" in errors[0].getMessage()
    with db.read() as session:
        last_error = session.execute(
            select(FolderCursor.last_error).where(
                FolderCursor.mailbox == ALICE, FolderCursor.folder == MAILBOX_LEVEL
            )
        ).scalar_one()
    assert UNSET in last_error
    db.dispose()
