"""Wrong credentials do not become a lock-out storm at the provider.

A refused login is retried only after `sync.auth_retry_seconds`, never at the quick
reconnect backoff: a loop of failed logins is what gets an account locked by the provider.
The login attempts are counted from Dovecot's own log, so what is checked is what the
server saw, and the error names the account, says what to fix and reaches `mailboxes status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers.dovecot import DovecotServer, ImapCredentials
from sqlalchemy import select

from mailcrm.daemon import mailbox_workers
from mailcrm.settings import ImapAccount, SalespersonSettings, Settings, SyncSettings
from mailcrm.store import migrate
from mailcrm.store.db import Database
from mailcrm.store.models import FolderCursor
from mailcrm.sync.supervisor import MAILBOX_LEVEL, MailboxWorker

ALICE = "alice@acme.example"
PASSWORD_ENV = "TEST_AUTH_RETRY_PW"
WRONG = "not-the-password"


@dataclass
class AuthEnv:
    db: Database
    db_path: Path
    dovecot: DovecotServer
    user: ImapCredentials
    tmp_path: Path

    def worker(self, auth_retry_seconds: float) -> MailboxWorker:
        settings = Settings(
            salespeople=[SalespersonSettings(name="Alice", email=ALICE, imap=self.account())],
            # Quick reconnects for network trouble: a storm would show up within seconds.
            sync=SyncSettings(
                poll_seconds=30, reconnect_max_seconds=0.2, auth_retry_seconds=auth_retry_seconds
            ),
        )
        (worker,) = mailbox_workers(self.db, settings)
        return worker

    def account(self) -> ImapAccount:
        return ImapAccount(
            host=self.user.host,
            port=self.user.port,
            security="plain",
            username=self.user.username,
            password_env=PASSWORD_ENV,
            timeout_seconds=10,
        )

    def login_failures(self) -> int:
        """Failed logins of this test's user as Dovecot logged them (one line per attempt)."""
        pattern = re.compile(rf"imap-login: .*auth failed.*user=<{re.escape(self.user.username)}>")
        return sum(1 for line in self.dovecot.log_text().splitlines() if pattern.search(line))

    def connection_error(self) -> tuple[int, str | None]:
        with self.db.read() as session:
            row = session.execute(
                select(FolderCursor.errors, FolderCursor.last_error).where(
                    FolderCursor.mailbox == ALICE, FolderCursor.folder == MAILBOX_LEVEL
                )
            ).first()
        return (row[0], row[1]) if row is not None else (0, None)


@pytest.fixture
def auth_env(dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthEnv]:
    dovecot.ensure_running()
    user = dovecot.add_user()
    monkeypatch.setenv(PASSWORD_ENV, WRONG)
    db_path = tmp_path / "mailcrm.db"
    db = Database(f"sqlite:///{db_path}")
    migrate.upgrade(db)
    yield AuthEnv(db, db_path, dovecot, user, tmp_path)
    db.dispose()
    # Dovecot delays every login from an address that failed recently (its auth penalty,
    # growing with each failure); a good login resets it, so later tests are not slowed.
    with (
        contextlib.suppress(OSError, imaplib.IMAP4.error),
        imaplib.IMAP4(user.host, user.port, timeout=30) as imap,
    ):
        imap.login(user.username, user.password)


async def _run_until(worker: MailboxWorker, failures: int, then: float = 0.0) -> float:
    """Run the worker until it has failed `failures` times, then `then` seconds more; return
    the elapsed time. (Dovecot's failure delay and auth penalty make a refused login take
    seconds, so what is waited for is a count, within a generous bound.)"""
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(worker.run(stop))
    try:
        while worker.state.failures < failures:
            assert time.monotonic() - started < 60, worker.state
            assert not task.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(then)
    finally:
        stop.set()
    await asyncio.wait_for(task, timeout=15)
    return time.monotonic() - started


def _wait_for_log(env: AuthEnv, count: int) -> int:
    """Dovecot writes its log line as the connection closes: give it a moment to appear."""
    deadline = time.monotonic() + 5
    while env.login_failures() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return env.login_failures()


def _status(env: AuthEnv) -> list[dict[str, object]]:
    config = env.tmp_path / "mailcrm.yaml"
    config.write_text(f"database:\n  url: sqlite:///{env.db_path}\n", encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    completed = subprocess.run(
        [sys.executable, "-m", "mailcrm", "--config", str(config), "mailboxes", "status", "--json"],
        cwd=env.tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    rows: list[dict[str, object]] = json.loads(completed.stdout)
    return rows


def test_wrong_password_is_tried_once_then_waits(auth_env: AuthEnv, caplog: pytest.LogCaptureFixture) -> None:
    env = auth_env
    worker = env.worker(auth_retry_seconds=60)
    caplog.set_level(logging.ERROR, logger="mailcrm.sync.supervisor")

    # After the first refusal, a few seconds: time for many quick reconnects (backoff
    # capped at 0.2 s), were the refusal retried like network trouble.
    asyncio.run(_run_until(worker, failures=1, then=3.0))

    assert worker.state.failures == 1
    assert _wait_for_log(env, 1) == 1
    assert env.login_failures() == 1, env.dovecot.log_text()[-2000:]
    failed = [r for r in caplog.records if getattr(r, "action", None) == "imap_auth_failed"]
    assert len(failed) == 1 and getattr(failed[0], "mailbox", None) == ALICE
    assert "retrying in 60 s" in failed[0].getMessage()

    error = worker.state.last_error
    assert error is not None
    assert env.user.username in error and env.user.host in error  # names the account
    assert "hint:" in error and "password" in error  # says what to fix
    assert WRONG not in error

    errors, last_error = env.connection_error()
    assert errors == 1 and last_error == error
    (row,) = [r for r in _status(env) if r["mailbox"] == ALICE]
    assert row["folder"] is None and row["errors"] == 1
    assert isinstance(row["last_error"], str) and env.user.username in row["last_error"]
    assert "hint:" in row["last_error"]


def test_short_auth_retry_spaces_the_attempts(auth_env: AuthEnv) -> None:
    env = auth_env
    retry = 0.5
    worker = env.worker(auth_retry_seconds=retry)

    elapsed = asyncio.run(_run_until(worker, failures=2, then=1.0))

    failures = worker.state.failures
    assert failures >= 2  # it does retry
    # Every attempt but the first follows a full `retry` pause: no tight loop.
    assert failures <= elapsed / retry + 1, (failures, elapsed)
    assert _wait_for_log(env, failures) == failures
    assert env.connection_error()[0] == failures
