"""Changes to mail already synced (CONDSTORE resume): flags set and messages deleted while the daemon
was down reach the store on the next sync, without fetching any message again. An IDLE
push that announces only new mail skips the flag-changes round trip, and loses no change."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import mailgen
import pytest
import test_sync
from sqlalchemy import select
from test_sync import ALICE, MailEnv

from mailcrm.daemon import mailbox_workers
from mailcrm.imap.client import ImapClient
from mailcrm.imap.connection import Connection
from mailcrm.imap.idle import Waiter
from mailcrm.store import mail, timeline
from mailcrm.store.models import FolderCursor, Message, MessageLocation, TimelineEvent
from mailcrm.sync.engine import FolderResult, FolderSync
from mailcrm.sync.supervisor import MailboxWorker

SOMSRI = "somsri@siam.example"
mail_env = test_sync.mail_env  # the same fixture: two salespeople on a private Dovecot


def _deliver(env: MailEnv, count: int) -> None:
    for index in range(count):
        env.dovecot.deliver(env.alice, mailgen.make(sender=SOMSRI, to=ALICE, subject=f"m{index}"))


def _inbox(results: list[FolderResult]) -> FolderResult:
    return next(r for r in results if r.folder == "INBOX")


def _server_modseq(env: MailEnv) -> int:
    out = env.dovecot.doveadm("mailbox", "status", "-u", env.alice.username, "highestmodseq", "INBOX")
    match = re.search(r"highestmodseq=(\d+)", out)
    assert match, out
    return int(match.group(1))


def _cursor_modseq(env: MailEnv) -> int | None:
    with env.db.read() as session:
        return session.execute(
            select(FolderCursor.highestmodseq).where(
                FolderCursor.mailbox == ALICE, FolderCursor.folder == "INBOX"
            )
        ).scalar_one()


def _locations(env: MailEnv) -> dict[int, tuple[set[str], bool]]:
    with env.db.read() as session:
        rows = session.execute(
            select(MessageLocation.uid, MessageLocation.flags, MessageLocation.expunged_at).where(
                MessageLocation.mailbox == ALICE, MessageLocation.folder == "INBOX"
            )
        ).all()
    return {uid: (set(flags.split()), expunged is not None) for uid, flags, expunged in rows}


def _messages(env: MailEnv) -> list[Any]:
    with env.db.read() as session:
        return [
            tuple(row)
            for row in session.execute(
                select(Message.id, Message.message_id, Message.subject, Message.created_at).order_by(
                    Message.id
                )
            )
        ]


def _change_while_stopped(env: MailEnv) -> None:
    """Another client's work while mailcrm is not running: read, flag, delete."""
    user = env.alice.username
    env.dovecot.doveadm("flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "uid", "1")
    env.dovecot.doveadm("flags", "add", "-u", user, "\\Flagged", "mailbox", "INBOX", "uid", "2")
    env.dovecot.doveadm("expunge", "-u", user, "mailbox", "INBOX", "uid", "3:4")


@pytest.mark.parametrize("qresync", [True, False], ids=["qresync", "condstore-only"])
def test_flags_and_expunges_made_while_stopped_are_applied_without_refetching(
    mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch, qresync: bool
) -> None:
    env = mail_env
    if qresync:  # expunges come as VANISHED: the folder's UIDs are never listed

        async def no_listing(self: ImapClient, last_uid: int) -> list[int]:
            raise AssertionError("UID SEARCH of the whole folder with QRESYNC")

        monkeypatch.setattr(ImapClient, "uids_upto", no_listing)
    else:  # a CONDSTORE server without QRESYNC: expunges are found by UID comparison
        monkeypatch.setattr(Connection, "has_qresync", property(lambda self: False))
    _deliver(env, 5)
    env.sync()
    before_messages, before_events = _messages(env), env.count(TimelineEvent)
    before_modseq = _cursor_modseq(env)
    assert before_modseq is not None

    _change_while_stopped(env)
    inbox = _inbox(asyncio.run(env.worker().sync_once()))

    assert inbox.fetched == 0  # nothing fetched again
    assert inbox.flags_changed >= 2 and inbox.expunged == 2
    locations = _locations(env)
    assert "\\Seen" in locations[1][0] and "\\Flagged" in locations[2][0]
    assert "\\Flagged" not in locations[1][0] and "\\Seen" not in locations[5][0]
    assert {uid for uid, (_, gone) in locations.items() if gone} == {3, 4}
    assert _messages(env) == before_messages  # rows kept as they were
    assert env.count(TimelineEvent) == before_events  # history kept
    modseq = _cursor_modseq(env)
    assert modseq is not None and modseq > before_modseq
    assert modseq == _server_modseq(env)

    # The timeline shows the flags and which messages are gone from the server.
    with env.db.read() as session:
        entries = timeline.for_customer(session, env.customer_id(SOMSRI))
    by_subject = {e.subject: e for e in entries}
    assert by_subject["m0"].flags == ["\\Seen"] and by_subject["m0"].expunged is False
    assert by_subject["m2"].expunged is True and by_subject["m3"].expunged is True
    assert by_subject["m4"].flags == [] and by_subject["m4"].expunged is False

    # Nothing more to do on the next pass.
    again = _inbox(asyncio.run(env.worker().sync_once()))
    assert (again.fetched, again.flags_changed, again.expunged) == (0, 0, 0)


def test_new_mail_and_changes_in_one_pass(mail_env: MailEnv) -> None:
    env = mail_env
    _deliver(env, 5)
    env.sync()
    _change_while_stopped(env)
    env.dovecot.deliver(env.alice, mailgen.make(sender=SOMSRI, to=ALICE, subject="new"))
    inbox = _inbox(asyncio.run(env.worker().sync_once()))
    assert inbox.fetched == 1 and inbox.stats.new_messages == 1 and inbox.expunged == 2
    assert env.count(Message) == 6
    assert _cursor_modseq(env) == _server_modseq(env)


def test_highestmodseq_is_kept_until_the_changes_are_stored(
    mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = mail_env
    _deliver(env, 4)
    env.sync()
    before = _cursor_modseq(env)
    _change_while_stopped(env)

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(mail, "mark_expunged", broken)
        with pytest.raises(RuntimeError):
            asyncio.run(env.worker().sync_once())
    assert _cursor_modseq(env) == before  # not moved past changes that were not stored
    assert "\\Seen" not in _locations(env)[1][0]  # the flags rolled back with it

    inbox = _inbox(asyncio.run(env.worker().sync_once()))
    assert inbox.expunged == 2
    assert "\\Seen" in _locations(env)[1][0]
    assert _cursor_modseq(env) == _server_modseq(env)


def test_without_condstore_expunges_are_still_found(
    mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = mail_env
    monkeypatch.setattr(Connection, "has_condstore", property(lambda self: False))
    monkeypatch.setattr(Connection, "has_qresync", property(lambda self: False))
    _deliver(env, 5)
    env.sync()
    assert _cursor_modseq(env) is None
    _change_while_stopped(env)
    env.dovecot.deliver(env.alice, mailgen.make(sender=SOMSRI, to=ALICE, subject="new"))
    inbox = _inbox(asyncio.run(env.worker().sync_once()))
    assert inbox.fetched == 1 and inbox.expunged == 2 and inbox.flags_changed == 0
    assert {uid for uid, (_, gone) in _locations(env).items() if gone} == {3, 4}
    assert env.count(Message) == 6


def _with_folders(env: MailEnv, *folders: str) -> MailboxWorker:
    alice = env.settings.salespeople[0]
    assert alice.imap is not None
    person = alice.model_copy(update={"imap": alice.imap.model_copy(update={"folders": list(folders)})})
    settings = env.settings.model_copy(update={"salespeople": [person, *env.settings.salespeople[1:]]})
    return next(w for w in mailbox_workers(env.db, settings) if w.mailbox.email == ALICE)


def _folder_cursor(env: MailEnv, folder: str) -> tuple[int | None, int]:
    with env.db.read() as session:
        row = session.execute(
            select(FolderCursor.uidvalidity, FolderCursor.last_uid).where(
                FolderCursor.mailbox == ALICE, FolderCursor.folder == folder
            )
        ).one()
    return row[0], row[1]


def test_a_folder_recreated_with_other_mail_is_read_again_and_history_is_kept(
    mail_env: MailEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = mail_env
    user = env.alice.username
    env.dovecot.create_folder(env.alice, "Projects")
    for index in range(3):
        env.dovecot.deliver(
            env.alice, mailgen.make(sender=SOMSRI, to=ALICE, subject=f"old {index}"), "Projects"
        )
    asyncio.run(_with_folders(env, "Projects").sync_once())
    old_validity, old_last = _folder_cursor(env, "Projects")
    assert old_last == 3

    env.dovecot.doveadm("mailbox", "delete", "-u", user, "Projects")
    env.dovecot.create_folder(env.alice, "Projects")
    status = env.dovecot.doveadm("mailbox", "status", "-u", user, "uidvalidity", "Projects")
    match = re.search(r"uidvalidity=(\d+)", status)
    assert match, status
    new_validity = int(match.group(1))
    if new_validity == old_validity:  # recreated within the same second
        new_validity += 1000
        env.dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new_validity), "Projects")
    for index in range(2):
        env.dovecot.deliver(
            env.alice,
            mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"new {index}"),
            "Projects",
        )

    with caplog.at_level(logging.WARNING, logger="mailcrm"):
        results = asyncio.run(_with_folders(env, "Projects").sync_once())
    projects = next(r for r in results if r.folder == "Projects")
    assert projects.uidvalidity_changed and projects.stats.new_messages == 2
    assert any(getattr(r, "action", None) == "uidvalidity_changed" for r in caplog.records)
    assert _folder_cursor(env, "Projects") == (new_validity, 2)  # cursor reset to the new folder
    assert env.kinds("wang@golden.example") == ["reply", "reply"]
    # The old messages stay on the timeline, shown as gone from the server.
    with env.db.read() as session:
        old = [e for e in timeline.for_customer(session, env.customer_id(SOMSRI)) if e.kind != "note"]
    assert sorted(e.subject or "" for e in old) == ["old 0", "old 1", "old 2"]
    assert all(e.expunged for e in old)
    assert env.count(Message) == 5


# -- IDLE pushes of new mail only ------------------------------------------------------------

CHANGEDSINCE = "UID FETCH (CHANGEDSINCE)"


def _record_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command run through the client's command path, plus "IDLE" at each IDLE start."""
    seen: list[str] = []
    run, idle_once = Connection.run, Waiter._idle_once

    async def recording_run(self: Connection, what: str, make: Callable[[], Any], **kwargs: Any) -> Any:
        seen.append(what)
        return await run(self, what, make, **kwargs)

    async def recording_idle(self: Waiter, window: float) -> Any:
        seen.append("IDLE")
        return await idle_once(self, window)

    monkeypatch.setattr(Connection, "run", recording_run)
    monkeypatch.setattr(Waiter, "_idle_once", recording_idle)
    return seen


async def _until(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def _idle_again(seen: list[str], after: int) -> None:
    """Wait until the worker is back in IDLE after the commands recorded so far."""
    await _until(lambda: "IDLE" in seen[after:], "the worker did not go back to IDLE")
    await asyncio.sleep(0.3)  # let the server acknowledge it


def test_new_mail_pushed_by_idle_skips_the_flag_fetch_and_a_pushed_flag_change_is_applied(
    mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = mail_env
    user = env.alice.username
    _deliver(env, 3)
    seen = _record_commands(monkeypatch)
    worker = env.worker()

    async def background(step: Callable[..., Any], *args: Any) -> None:
        await asyncio.to_thread(step, *args)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await _until(lambda: env.count(Message) == 3, worker.state.last_error or "first sync")
            await _idle_again(seen, 0)
            known = _cursor_modseq(env)
            assert known is not None

            # New mail: the push says EXISTS only; the pass fetches it without CHANGEDSINCE.
            mark = len(seen)
            await background(env.dovecot.deliver, env.alice, mailgen.make(sender=SOMSRI, to=ALICE))
            await _until(lambda: env.count(Message) == 4, "new mail not synced")
            await _idle_again(seen, mark)
            assert "UID FETCH (BODY.PEEK[])" in seen[mark:]
            assert CHANGEDSINCE not in seen[mark:], seen[mark:]
            # HIGHESTMODSEQ stays where flags were last asked for, so nothing below it is skipped.
            assert _cursor_modseq(env) == known < _server_modseq(env)

            # A flag change: the push carries FETCH, and the pass asks for changes since `known`.
            mark = len(seen)
            await background(
                env.dovecot.doveadm, "flags", "add", "-u", user, "\\Flagged", "mailbox", "INBOX", "uid", "1"
            )
            await _until(lambda: "\\Flagged" in _locations(env)[1][0], "flag change not synced")
            assert CHANGEDSINCE in seen[mark:]
            await _idle_again(seen, mark)
            assert _cursor_modseq(env) == _server_modseq(env)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)

    asyncio.run(scenario())
    assert worker.state.failures == 0


def test_a_pass_that_skips_flag_changes_keeps_them_for_the_next_pass(mail_env: MailEnv) -> None:
    """A change no push announced (made between a pass and the next IDLE, or while stopped)
    is not lost by a new-mail-only pass: HIGHESTMODSEQ stays, the next pass that asks applies it."""
    env = mail_env
    user = env.alice.username
    _deliver(env, 3)
    env.sync()
    known = _cursor_modseq(env)
    env.dovecot.doveadm("flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "uid", "2")
    env.dovecot.deliver(env.alice, mailgen.make(sender=SOMSRI, to=ALICE, subject="new"))
    worker = env.worker()
    imap = worker.mailbox.imap

    async def inbox_pass(check_flags: bool) -> FolderResult:
        async with await ImapClient.connect(imap) as client:
            sync = FolderSync(env.db, client, worker.identity, "INBOX")
            return await sync.run(check_flags=check_flags)

    skipped = asyncio.run(inbox_pass(False))
    assert skipped.fetched == 1 and not skipped.flags_checked and skipped.flags_changed == 0
    assert "\\Seen" not in _locations(env)[2][0]
    assert _cursor_modseq(env) == known

    checked = asyncio.run(inbox_pass(True))
    assert checked.fetched == 0 and checked.flags_checked and checked.flags_changed >= 1
    assert "\\Seen" in _locations(env)[2][0]
    assert _cursor_modseq(env) == _server_modseq(env)
