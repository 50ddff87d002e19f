"""Mailbox sync against a real Dovecot: what lands on which customer's timeline, and that
interruptions lose nothing and double nothing."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mailgen
import pytest
from servers.dovecot import DovecotServer, ImapCredentials
from sqlalchemy import func, select

from mailcrm.daemon import mailbox_workers
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.matching import read_batch
from mailcrm.settings import ImapAccount, SalespersonSettings, Settings, SyncSettings
from mailcrm.store import customers, migrate, timeline
from mailcrm.store.db import Database
from mailcrm.store.models import (
    EmailAddress,
    FolderCursor,
    Message,
    MessageLink,
    MessageLocation,
    Suppression,
    TimelineEvent,
)
from mailcrm.sync import engine
from mailcrm.sync.supervisor import MAILBOX_LEVEL, MailboxWorker

ALICE = "alice@acme.example"
BOB = "bob@acme.example"


@dataclass
class MailEnv:
    db: Database
    settings: Settings
    dovecot: DovecotServer
    alice: ImapCredentials
    bob: ImapCredentials

    def deliver(self, raw: bytes, folder: str = "INBOX", to: ImapCredentials | None = None) -> None:
        """New mail in Alice's mailbox (or ``to``'s), as an MTA would file it, server running."""
        self.dovecot.deliver(to or self.alice, raw, folder)

    def drop_into_maildir(self, raw: bytes) -> None:
        """New mail written straight into Alice's Maildir INBOX: fast for bulk, indexed on access."""
        self.dovecot._deliver_to_maildir(self.alice, raw, "INBOX")

    def worker(self, email: str = ALICE) -> MailboxWorker:
        return next(w for w in mailbox_workers(self.db, self.settings) if w.mailbox.email == email)

    def sync(self, email: str = ALICE) -> None:
        asyncio.run(self.worker(email).sync_once())

    def customer_id(self, address: str) -> int:
        with self.db.read() as session:
            found = customers.resolve(session, address).id
        assert found is not None
        return found

    def kinds(self, address: str) -> list[str]:
        with self.db.read() as session:
            return [
                e.kind for e in timeline.for_customer(session, self.customer_id(address)) if e.kind != "note"
            ]

    def count(self, model: type, *where: object) -> int:
        with self.db.read() as session:
            return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _account(creds: ImapCredentials, env_name: str) -> ImapAccount:
    return ImapAccount(
        host=creds.host,
        port=creds.port,
        security="plain",
        username=creds.username,
        password_env=env_name,
        timeout_seconds=10,
    )


def make_mail_env(db: Database, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> MailEnv:
    """Two salespeople with fresh mailboxes on the private Dovecot, three customers, on `db`."""
    dovecot.ensure_running()
    alice, bob = dovecot.add_user(), dovecot.add_user()
    monkeypatch.setenv("TEST_ALICE_PW", alice.password)
    monkeypatch.setenv("TEST_BOB_PW", bob.password)
    settings = Settings(
        salespeople=[
            SalespersonSettings(name="Alice", email=ALICE, imap=_account(alice, "TEST_ALICE_PW")),
            SalespersonSettings(name="Bob", email=BOB, imap=_account(bob, "TEST_BOB_PW")),
        ],
        sync=SyncSettings(poll_seconds=30, reconnect_max_seconds=1.0, batch_messages=50),
    )
    env = MailEnv(db, settings, dovecot, alice, bob)
    mailbox_workers(db, settings)  # salespeople rows
    with db.write() as session:
        for name, addresses in (
            ("Somsri Jaidee", "somsri@siam.example"),
            ("Wang Fang", "wang@golden.example"),
            ("Sara Ahmadi", "sara@persepolis.example"),
        ):
            customers.create(session, draft_from_fields({"name": name, "email": addresses}, new_record=True))
    return env


@pytest.fixture
def env(dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailEnv]:
    """The setup every sync test shares: Alice and Bob with fresh mailboxes on the private
    Dovecot, three customers, on a migrated SQLite store that is disposed of afterwards."""
    db = Database(f"sqlite:///{tmp_path}/mailcrm.db")
    migrate.upgrade(db)
    yield make_mail_env(db, dovecot, monkeypatch)
    db.dispose()


mail_env = env  # the name the other sync test modules import it by


def test_inbound_and_outbound_mail_lands_on_the_right_timelines(env: MailEnv) -> None:
    first = mailgen.message_id("acme.example")
    now = datetime.now(UTC)
    env.deliver(
        mailgen.make(
            sender=ALICE,
            to="somsri@siam.example",
            subject="Our offer",
            msgid=first,
            date=now - timedelta(hours=2),
        ),
        "Sent",
    )
    env.deliver(
        mailgen.make(
            sender="somsri@siam.example",
            to=ALICE,
            subject="Re: Our offer",
            in_reply_to=first,
            references=[first],
            date=now - timedelta(hours=1),
        ),
    )
    env.deliver(
        mailgen.make(
            sender="wang@golden.example",
            to=ALICE,
            cc=["sara@persepolis.example"],
            subject="价格 question",
            body="请报价。\n",
        ),
    )
    env.sync()
    assert env.kinds("somsri@siam.example") == ["reply", "email_out"]
    assert env.kinds("wang@golden.example") == ["reply"]
    assert env.kinds("sara@persepolis.example") == ["email_in"]
    with env.db.read() as session:
        entries = timeline.for_customer(session, env.customer_id("wang@golden.example"))
    assert entries[0].subject == "价格 question"
    assert entries[0].direction == "in"
    assert entries[0].message_id

    # A second pass finds nothing new and adds nothing.
    before = (env.count(Message), env.count(TimelineEvent), env.count(MessageLink))
    env.sync()
    assert (env.count(Message), env.count(TimelineEvent), env.count(MessageLink)) == before


def test_sync_does_not_mark_mail_as_read(env: MailEnv) -> None:
    env.deliver(mailgen.make(sender="somsri@siam.example", to=ALICE))
    env.sync()
    flags = env.dovecot.doveadm("fetch", "-u", env.alice.username, "flags", "mailbox", "INBOX", "all")
    assert "\\Seen" not in flags


def test_unknown_senders_become_leads_but_robots_do_not(env: MailEnv) -> None:
    env.deliver(
        mailgen.make(sender="new.prospect@startup.example", to=ALICE, name="Dara Sok", subject="Interested"),
    )
    env.deliver(mailgen.make(sender="noreply@shop.example", to=ALICE, subject="Receipt"))
    env.deliver(
        mailgen.make(
            sender="news@list.example",
            to=ALICE,
            subject="Digest",
            headers={"List-Id": "<news.list.example>", "Precedence": "list"},
        ),
    )
    env.deliver(
        mailgen.make(
            sender="ooo@other.example",
            to=ALICE,
            subject="Out of Office: back Monday",
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    env.sync()
    with env.db.read() as session:
        lead = customers.views(session, [customers.resolve(session, "new.prospect@startup.example")])[0]
        for robot in ("noreply@shop.example", "news@list.example", "ooo@other.example"):
            assert session.execute(select(EmailAddress).where(EmailAddress.address == robot)).first() is None
    assert lead.name == "Dara Sok"
    assert lead.status == "lead"
    assert lead.lead_source == "inbound-email"
    assert lead.owner == ALICE
    assert env.kinds("new.prospect@startup.example") == ["reply"]


def test_a_customer_writing_from_a_new_address_is_recognised_by_thread(env: MailEnv) -> None:
    ours = mailgen.message_id("acme.example")
    env.deliver(
        mailgen.make(sender=ALICE, to="sara@persepolis.example", msgid=ours, subject="Proposal"),
        "Sent",
    )
    env.deliver(
        mailgen.make(
            sender="sara.private@mail.example",
            to=ALICE,
            subject="Re: Proposal",
            in_reply_to=ours,
            references=[ours],
        ),
    )
    env.sync()
    sara = env.customer_id("sara@persepolis.example")
    assert env.customer_id("sara.private@mail.example") == sara
    assert sorted(env.kinds("sara@persepolis.example")) == ["email_out", "reply"]


def test_auto_reply_is_not_a_reply(env: MailEnv) -> None:
    env.deliver(
        mailgen.make(
            sender="wang@golden.example",
            to=ALICE,
            subject="自动回复: Our offer",
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    env.deliver(
        mailgen.make(
            sender="somsri@siam.example",
            to=ALICE,
            subject="Automatic reply: Our offer",
            headers={"X-Autoreply": "yes"},
        ),
    )
    env.sync()
    assert env.kinds("wang@golden.example") == ["auto_reply"]
    assert env.kinds("somsri@siam.example") == ["auto_reply"]


def test_hard_bounce_suppresses_and_a_delay_does_not(env: MailEnv) -> None:
    env.deliver(
        mailgen.make(sender=ALICE, to="somsri@siam.example", subject="Offer", msgid="<offer-2@acme.example>"),
        "Sent",
    )
    env.deliver(
        mailgen.dsn(
            reporting_to=ALICE,
            failed="wang@golden.example",
            status="5.1.1",
            original_id="<offer-1@acme.example>",
        ),
    )
    env.deliver(
        mailgen.dsn(
            reporting_to=ALICE,
            failed="somsri@siam.example",
            status="4.4.7",
            action="delayed",
            original_id="<offer-2@acme.example>",
        ),
    )
    env.sync()
    assert env.count(Suppression, Suppression.address == "wang@golden.example") == 1
    assert env.count(Suppression, Suppression.address == "somsri@siam.example") == 0
    assert "bounced" in env.kinds("wang@golden.example")
    assert sorted(env.kinds("somsri@siam.example")) == ["delayed", "email_out"]
    with env.db.read() as session:
        view = customers.views(session, [customers.resolve(session, "wang@golden.example")])[0]
    assert view.emails[0].suppressed is True
    # MAILER-DAEMON never becomes a lead.
    assert env.count(EmailAddress, EmailAddress.address.like("mailer-daemon%")) == 0


def test_a_dmarc_failure_warns_the_salesperson_once_and_spares_the_customer(
    env: MailEnv, caplog: pytest.LogCaptureFixture
) -> None:
    words = "smtp; 550 5.7.26 Unauthenticated email from acme.example is not accepted due to DMARC policy"
    for number in (1, 2):
        env.deliver(
            mailgen.dsn(
                reporting_to=ALICE,
                failed="wang@golden.example",
                status="5.7.26",
                original_id=f"<offer-{number}@acme.example>",
                diagnostic=words,
            ),
        )
        with caplog.at_level(logging.WARNING, logger="mailcrm"):
            env.sync()
    warnings = [r.getMessage() for r in caplog.records if "fails DKIM/DMARC" in r.getMessage()]
    assert warnings == [
        "mail from acme.example fails DKIM/DMARC at golden.example (550 5.7.26 Unauthenticated email from "
        "acme.example is not accepted due to DMARC policy): fix your DNS (SPF, DKIM, DMARC records)"
    ]
    assert env.count(Suppression) == 0
    assert env.kinds("wang@golden.example") == ["bounced", "bounced"]


def test_message_in_two_mailboxes_is_stored_once_and_linked_to_both(env: MailEnv) -> None:
    shared = mailgen.make(sender="somsri@siam.example", to=ALICE, cc=[BOB], subject="For both of you")
    env.deliver(shared)
    env.deliver(shared, to=env.bob)
    env.sync(ALICE)
    env.sync(BOB)
    assert env.count(Message) == 1
    assert env.count(MessageLocation) == 2
    assert env.kinds("somsri@siam.example") == ["reply"]


@pytest.mark.parametrize("parse_in_process", [False, True], ids=["parse-in-thread", "parse-in-process"])
def test_every_synced_message_records_its_folder_location_and_flags(
    env: MailEnv, parse_in_process: bool
) -> None:
    for index in range(3):
        env.deliver(mailgen.make(sender="somsri@siam.example", to=ALICE, subject=f"m{index}"))
    env.dovecot.doveadm("flags", "add", "-u", env.alice.username, "\\Flagged", "mailbox", "INBOX", "uid", "2")
    worker = env.worker()
    if parse_in_process:
        worker.parse_process_from = 1
    asyncio.run(worker.sync_once())
    with env.db.read() as session:
        validity = session.execute(
            select(FolderCursor.uidvalidity).where(FolderCursor.folder == "INBOX")
        ).scalar_one()
        rows = session.execute(
            select(MessageLocation.uid, MessageLocation.flags, Message.subject)
            .join(Message, Message.id == MessageLocation.message_pk)  # type: ignore[arg-type]
            .where(MessageLocation.mailbox == ALICE, MessageLocation.folder == "INBOX")
            .where(MessageLocation.uidvalidity == validity)
            .order_by(MessageLocation.uid)  # type: ignore[arg-type]
        ).all()
    assert [(uid, subject) for uid, _, subject in rows] == [(1, "m0"), (2, "m1"), (3, "m2")]
    assert [("\\Flagged" in flags.split()) for _, flags, _ in rows] == [False, True, False]
    assert "\\Seen" not in rows[0].flags  # syncing never marks mail as read
    assert env.kinds("somsri@siam.example") == ["reply", "reply", "reply"]


def test_malformed_and_multi_charset_mail_never_stops_sync(env: MailEnv) -> None:
    raws = [
        mailgen.make(
            sender="somsri@siam.example",
            to=ALICE,
            subject="สวัสดีครับ",
            body="ทดสอบภาษาไทย\n",
            charset="tis-620",
        ),
        mailgen.make(
            sender="wang@golden.example", to=ALICE, subject="报价单", body="中文内容\n", charset="gb2312"
        ),
        b"From: \xff\xfe broken <somsri@siam.example>\r\nSubject: =?x-unknown?Q?oops?=\r\n\r\nbody\r\n",
        b"this is not an email at all\r\n\r\n\x00\x01\x02",
        b"Content-Type: multipart/mixed; boundary=zz\r\nFrom: sara@persepolis.example\r\n\r\n--zz\r\n",
    ]
    for raw in raws:
        env.deliver(raw)
    env.sync()
    assert env.count(Message) == len(raws)
    assert env.count(Message, Message.is_malformed.is_(True)) >= 2
    with env.db.read() as session:
        subjects = set(session.execute(select(Message.subject)).scalars())
    assert {"สวัสดีครับ", "报价单"} <= subjects


def test_uidvalidity_change_resyncs_without_duplicates(
    env: MailEnv, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(5):
        env.deliver(mailgen.make(sender="somsri@siam.example", to=ALICE, subject=f"m{index}"))
    env.deliver(mailgen.make(sender="wang@golden.example", to=ALICE, msgid="", subject="no message id"))
    env.sync()
    before = (env.count(Message), env.count(TimelineEvent))
    with env.db.read() as session:
        old = session.execute(
            select(FolderCursor.uidvalidity).where(FolderCursor.folder == "INBOX")
        ).scalar_one()
    env.dovecot.doveadm(
        "mailbox", "update", "-u", env.alice.username, "--uid-validity", str(int(old) + 1000), "INBOX"
    )
    env.deliver(mailgen.make(sender="sara@persepolis.example", to=ALICE, subject="new one"))
    with caplog.at_level(logging.WARNING, logger="mailcrm"):
        env.sync()
    assert any(getattr(r, "action", None) == "uidvalidity_changed" for r in caplog.records)
    assert env.count(Message) == before[0] + 1
    assert env.count(TimelineEvent) == before[1] + 1


def test_same_message_with_a_new_uid_is_not_added_twice(env: MailEnv) -> None:
    raw = mailgen.make(sender="somsri@siam.example", to=ALICE, subject="re-filed")
    env.deliver(raw)
    env.sync()
    env.dovecot.doveadm("expunge", "-u", env.alice.username, "mailbox", "INBOX", "all")
    env.deliver(raw)
    env.sync()
    assert env.count(Message) == 1
    assert env.kinds("somsri@siam.example") == ["reply"]


@pytest.mark.parametrize("parse_in_process", [False, True], ids=["parse-in-thread", "parse-in-process"])
def test_server_killed_mid_fetch_loses_nothing_and_doubles_nothing(
    env: MailEnv, parse_in_process: bool
) -> None:
    total = 600
    padding = "x" * 20_000 + "\n"
    for index in range(total):
        raw = mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"bulk {index}", body=padding)
        env.drop_into_maildir(raw)
    worker = env.worker()
    if parse_in_process:
        worker.parse_process_from = 1

    async def interrupted() -> None:
        task = asyncio.create_task(worker.sync_once())
        deadline = time.monotonic() + 60
        while env.count(Message) < 100:
            assert time.monotonic() < deadline, "sync made no progress"
            assert not task.done(), task
            await asyncio.sleep(0.02)
        env.dovecot.kill()
        with pytest.raises(Exception):  # noqa: B017 - any connection error is fine here
            await asyncio.wait_for(task, timeout=30)

    asyncio.run(interrupted())
    partial = env.count(Message)
    assert 100 <= partial < total
    with env.db.read() as session:
        last_uid = session.execute(
            select(FolderCursor.last_uid).where(FolderCursor.folder == "INBOX")
        ).scalar_one()
    assert last_uid <= partial  # the cursor never runs ahead of what was stored
    env.dovecot.restart()
    env.sync()
    assert env.count(Message) == total
    assert env.count(TimelineEvent) == total


def _parse_but_die_in_a_worker_process(raws: Sequence[bytes]) -> Any:
    """Stands in for the parser: a worker process running it dies at once."""
    if multiprocessing.parent_process() is not None:
        os._exit(1)
    return read_batch(raws)


def test_a_dying_parsing_process_loses_nothing(
    env: MailEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(120):
        raw = mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"bulk {index}")
        env.drop_into_maildir(raw)
    monkeypatch.setattr(engine, "read_batch", _parse_but_die_in_a_worker_process)
    worker = env.worker()
    worker.parse_process_from = 1
    with caplog.at_level(logging.WARNING, logger="mailcrm"):
        asyncio.run(worker.sync_once())
    assert any("parsing process unavailable" in record.getMessage() for record in caplog.records)
    assert env.count(Message) == 120
    assert env.count(TimelineEvent, TimelineEvent.kind == "reply") == 120


def test_idle_delivery_reaches_the_timeline_within_two_seconds(env: MailEnv) -> None:
    worker = env.worker()

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            deadline = time.monotonic() + 20
            while worker.state.last_sync_at is None:
                assert time.monotonic() < deadline, worker.state.last_error
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # let it enter IDLE
            started = time.monotonic()
            await asyncio.to_thread(env.deliver, mailgen.make(sender="sara@persepolis.example", to=ALICE))
            while env.count(Message) == 0:
                assert time.monotonic() - started < 10, "not delivered"
                await asyncio.sleep(0.02)
            return time.monotonic() - started
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)

    latency = asyncio.run(scenario())
    assert latency < 2.0


def test_daemon_recovers_after_the_server_restarts(env: MailEnv) -> None:
    worker = env.worker()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            deadline = time.monotonic() + 20
            while worker.state.last_sync_at is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await asyncio.to_thread(env.dovecot.kill)
            await asyncio.to_thread(env.deliver, mailgen.make(sender="wang@golden.example", to=ALICE))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(env.dovecot.restart)
            deadline = time.monotonic() + 20
            while env.count(Message) == 0:
                assert time.monotonic() < deadline, worker.state.last_error
                await asyncio.sleep(0.05)
            assert worker.state.failures >= 1
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)

    asyncio.run(scenario())


def test_wrong_password_is_reported_clearly(env: MailEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ALICE_PW", "wrong password")
    worker = env.worker()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 15
        while worker.state.failures == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert worker.state.last_error is not None
    assert env.alice.username in worker.state.last_error
    assert "wrong password" not in worker.state.last_error
    with env.db.read() as session:
        row = session.execute(
            select(FolderCursor).where(FolderCursor.mailbox == ALICE, FolderCursor.folder == MAILBOX_LEVEL)
        ).scalar_one()
    assert row.errors == 1 and row.last_error


def test_reply_and_original_in_one_batch_are_threaded(env: MailEnv, tmp_path: Path) -> None:
    import mailbox as mailboxes

    from mailcrm.sync.backfill import backfill
    from mailcrm.sync.mailfiles import open_source

    ours = mailgen.message_id("acme.example")
    archive = mailboxes.mbox(tmp_path / "all.mbox")
    archive.add(mailgen.make(sender=ALICE, to="wang@golden.example", msgid=ours, subject="Quote"))
    archive.add(
        mailgen.make(sender="fang.home@mail.example", to=ALICE, in_reply_to=ours, subject="Re: Quote")
    )
    archive.close()  # flushes, and leaves no open file behind
    source = open_source("mbox", tmp_path / "all.mbox", max_message_bytes=2**20)
    identity = env.worker().identity
    stats = backfill(env.db, source, identity, "import").stats
    assert stats.leads == 0 and stats.new_addresses == 1
    assert env.customer_id("fang.home@mail.example") == env.customer_id("wang@golden.example")


def test_a_synced_reply_cancels_pending_follow_ups_and_an_auto_reply_does_not(env: MailEnv) -> None:
    from mailcrm.store.models import OutboxItem

    due = datetime.now(UTC) + timedelta(days=2)
    with env.db.write() as session:
        for address, key in (("somsri@siam.example", "a"), ("wang@golden.example", "b")):
            customer = customers.resolve(session, address).id
            assert customer is not None
            session.add(
                OutboxItem(
                    rule="follow-up",
                    customer_id=customer,
                    occurrence=f"followup:{key}:1",
                    template="follow_up",
                    due_at=due,
                    message_id=f"<fu-{key}@acme.example>",
                )
            )
    env.deliver(mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Re: offer"))
    env.deliver(
        mailgen.make(
            sender="wang@golden.example",
            to=ALICE,
            subject="Out of Office",
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    env.sync()
    with env.db.read() as session:
        states = {
            row[0]: row[1]
            for row in session.connection().execute(select(OutboxItem.occurrence, OutboxItem.state))
        }
    assert states == {"followup:a:1": "cancelled", "followup:b:1": "due"}
