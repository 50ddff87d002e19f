"""`mailcrm sync`, `mailboxes status`, `run` and `import mbox|maildir` as a user runs them."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mailgen
import pytest
from servers.dovecot import DovecotServer, ImapCredentials

from .conftest import CLI

ALICE = "alice@acme.example"


@pytest.fixture
def configured(tmp_path: Path, dovecot: DovecotServer, imap_user: ImapCredentials) -> dict[str, str]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(
        f"""\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice
    email: {ALICE}
    imap:
      host: {imap_user.host}
      port: {imap_user.port}
      security: plain
      username: {imap_user.username}
      password_env: ALICE_IMAP_PASSWORD
""",
        encoding="utf-8",
    )
    return {"ALICE_IMAP_PASSWORD": imap_user.password}


def test_sync_once_puts_mail_on_timelines(
    cli: CLI, configured: dict[str, str], dovecot: DovecotServer, imap_user: ImapCredentials
) -> None:
    assert cli("customers", "add", "--name", "Somsri", "-e", "somsri@siam.example").code == 0
    ours = mailgen.message_id("acme.example")
    dovecot.deliver(
        imap_user, mailgen.make(sender=ALICE, to="somsri@siam.example", msgid=ours, subject="Quote"), "Sent"
    )
    dovecot.deliver(
        imap_user, mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Re: Quote", in_reply_to=ours)
    )
    dovecot.deliver(
        imap_user,
        mailgen.dsn(reporting_to=ALICE, failed="somsri@siam.example", status="5.1.1", original_id=ours),
    )

    result = cli("sync", "--once", "--json", extra_env=configured)
    assert result.code == 0, result.stderr
    folders = {f["folder"]: f for f in result.json()[0]["folders"]}
    assert folders["INBOX"]["new_messages"] == 2 and folders["INBOX"]["bounces"] == 1
    assert folders["Sent"]["new_messages"] == 1

    entries = cli("timeline", "somsri@siam.example", "--json").json()
    assert {e["kind"] for e in entries} == {"email_out", "reply", "bounced"}
    email = next(e for e in entries if e["kind"] == "reply")
    assert email["direction"] == "in" and email["subject"] == "Re: Quote" and email["message_id"]
    assert all({"kind", "at", "direction", "message_id", "subject"} <= set(e) for e in entries)

    shown = cli("customers", "show", "somsri@siam.example", "--json").json()
    assert shown["emails"] == [
        {
            "address": "somsri@siam.example",
            "primary": True,
            "suppressed": True,
            "suppression_reason": "hard_bounce",
        }
    ]

    status = cli("mailboxes", "status", "--json").json()
    inbox = next(row for row in status if row["folder"] == "INBOX")
    assert inbox["mailbox"] == ALICE and inbox["messages"] == 2 and inbox["errors"] == 0
    assert inbox["last_sync_at"]


def configured_db(cli: CLI) -> Path:
    """The database file of the `configured` installation (created by a first command)."""
    found = cli("db", "status", "--json").json()["database"]
    return Path(found.removeprefix("sqlite:///"))


def _sent_row(path: Path, message_id: str) -> None:
    from datetime import UTC, datetime

    from mailcrm.store.db import Database
    from mailcrm.store.models import OutboxItem

    db = Database(f"sqlite:///{path}")
    now = datetime.now(UTC)
    with db.write() as session:
        session.add(
            OutboxItem(rule="quote", customer_id=1, occurrence="1", template="t", sender=ALICE, due_at=now,
                       state="sent", attempts=1, message_id=message_id, sent_at=now)
        )  # fmt: skip
    db.dispose()


def test_bounce_reasons_and_sender_issues_are_shown(
    cli: CLI, configured: dict[str, str], dovecot: DovecotServer, imap_user: ImapCredentials
) -> None:
    """A full mailbox is on the timeline with its reason and suppresses nothing; a DMARC
    failure is the salesperson's to fix, listed by `mailboxes status`."""
    assert cli("customers", "add", "--name", "Somsri", "-e", "somsri@siam.example").code == 0
    assert cli("customers", "add", "--name", "Wang", "-e", "wang@golden.example").code == 0
    _sent_row(configured_db(cli), "<quote-1@acme.example>")  # the email the first report returns
    dovecot.deliver(
        imap_user,
        mailgen.dsn(
            reporting_to=ALICE,
            failed="somsri@siam.example",
            status="5.2.2",
            original_id="<quote-1@acme.example>",
            diagnostic="smtp; 552 5.2.2 mailbox full",
        ),
    )
    dovecot.deliver(
        imap_user,
        mailgen.dsn(
            reporting_to=ALICE,
            failed="wang@golden.example",
            status="5.7.26",
            original_id="<quote-2@acme.example>",
            diagnostic="smtp; 550 5.7.26 Unauthenticated email is not accepted due to DMARC policy",
        ),
    )
    result = cli("sync", "--once", "--json", extra_env=configured)
    assert result.code == 0, result.stderr
    assert "fails DKIM/DMARC at golden.example" in result.stderr  # the one warning

    timeline = cli("timeline", "somsri@siam.example")
    assert timeline.code == 0 and "mailboxfull (5.2.2); address not suppressed" in timeline.stdout
    (entry,) = cli("timeline", "somsri@siam.example", "--json").json()
    assert (entry["kind"], entry["payload"]["reason"], entry["payload"]["suppressed"]) == (
        "bounced",
        "mailboxfull",
        False,
    )
    shown = cli("customers", "show", "wang@golden.example", "--json").json()
    assert shown["emails"][0]["suppressed"] is False

    shown_row = cli("outbox", "show", "1")
    assert shown_row.code == 0 and "bounced" in shown_row.stdout and "mailboxfull" in shown_row.stdout
    history = cli("outbox", "show", "1", "--json").json()["history"]
    assert [(a["outcome"], a["reason"]) for a in history] == [("bounced", "mailboxfull")]

    status = cli("mailboxes", "status")
    assert status.code == 0 and "fails DKIM/DMARC at golden.example" in status.stdout
    rows = cli("mailboxes", "status", "--json").json()
    (issue,) = [row for row in rows if row["kind"] == "sender_issue"]
    assert (issue["mailbox"], issue["cause"], issue["receiving_domain"], issue["count"]) == (
        ALICE,
        "authfailure",
        "golden.example",
        1,
    )
    assert issue["last_error"].startswith("mail from acme.example fails DKIM/DMARC at golden.example")
    assert all(row["kind"] == "folder" for row in rows if row is not issue)


def test_wrong_password_fails_with_a_clear_message(cli: CLI, configured: dict[str, str]) -> None:
    result = cli("sync", "--once", extra_env={"ALICE_IMAP_PASSWORD": "not the password"})
    assert result.code == 1
    assert ALICE in result.stderr
    assert "not the password" not in result.stderr
    assert "Traceback" not in result.stderr
    missing = cli("sync", "--once")
    assert missing.code == 1 and "ALICE_IMAP_PASSWORD is not set" in missing.stderr


def test_run_stops_cleanly_on_sigterm(
    tmp_path: Path, configured: dict[str, str], dovecot: DovecotServer, imap_user: ImapCredentials
) -> None:
    dovecot.deliver(imap_user, mailgen.make(sender="new.lead@startup.example", to=ALICE))
    env = {**os.environ, **configured, "MAILCRM_LOG_LEVEL": "info"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailcrm", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        database = tmp_path / "config" / "crm.db"
        while time.monotonic() < deadline:
            if database.exists() and _lead_count(database) == 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the daemon did not sync within 30 s")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert "daemon stopped" in err


def _lead_count(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM customer").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_backfill_from_mbox_and_maildir_is_idempotent(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(
        f"salespeople:\n  - name: Alice\n    email: {ALICE}\n", encoding="utf-8"
    )
    assert cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example").code == 0
    box = mailbox.mbox(tmp_path / "takeout.mbox")
    for index in range(3):
        box.add(mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"Order {index}"))
    box.add(mailgen.make(sender=ALICE, to="wang@golden.example", subject="Thanks"))
    box.close()  # flushes, and leaves no open file behind
    first = cli("import", "mbox", "takeout.mbox", "--json")
    assert first.code == 0, first.stderr
    assert first.json()["new_messages"] == 4
    again = cli("import", "mbox", "takeout.mbox", "--json").json()
    assert again["messages"] == 4 and again["new_messages"] == 0
    kinds = [e["kind"] for e in cli("timeline", "wang@golden.example", "--json").json()]
    assert sorted(kinds) == ["email_out", "reply", "reply", "reply"]

    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(mailgen.make(sender="prospect@startup.example", to=ALICE, name="Dara Sok"))
    result = cli("import", "maildir", "Maildir", "--json")
    assert result.code == 0 and result.json()["leads"] == 1
    assert cli("customers", "show", "prospect@startup.example", "--json").json()["lead_source"] == (
        "inbound-email"
    )
    bad = cli("import", "maildir", "takeout.mbox")
    assert bad.code == 1 and "not a Maildir" in bad.stderr


BOB = "bob@acme.example"


@pytest.fixture
def two_mailboxes(tmp_path: Path, dovecot: DovecotServer) -> tuple[dict[str, str], ImapCredentials]:
    """Alice's mailbox works (with an extra folder, Projects); Bob's password is wrong."""
    alice, bob = dovecot.add_user(), dovecot.add_user()
    dovecot.create_folder(alice, "Projects")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(
        f"""\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice
    email: {ALICE}
    imap:
      host: {alice.host}
      port: {alice.port}
      security: plain
      username: {alice.username}
      password_env: ALICE_IMAP_PASSWORD
      folders: [Projects]
  - name: Bob
    email: {BOB}
    imap:
      host: {bob.host}
      port: {bob.port}
      security: plain
      username: {bob.username}
      password_env: BOB_IMAP_PASSWORD
""",
        encoding="utf-8",
    )
    return {"ALICE_IMAP_PASSWORD": alice.password, "BOB_IMAP_PASSWORD": "not bob's password"}, alice


def test_one_broken_mailbox_does_not_stop_the_others(
    cli: CLI, two_mailboxes: tuple[dict[str, str], ImapCredentials], dovecot: DovecotServer
) -> None:
    env, alice = two_mailboxes
    assert cli("customers", "add", "--name", "Somsri", "-e", "somsri@siam.example").code == 0
    dovecot.deliver(alice, mailgen.make(sender="somsri@siam.example", to=ALICE, subject="In the inbox"))
    dovecot.deliver(alice, mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Filed"), "Projects")

    result = cli("sync", "--once", "--json", extra_env=env)
    assert result.code == 1  # one mailbox failed
    report = {entry["mailbox"]: entry for entry in result.json()}
    assert "login failed" in report[BOB]["error"]
    assert "not bob's password" not in result.stdout + result.stderr
    folders = {f["folder"]: f["new_messages"] for f in report[ALICE]["folders"]}
    assert folders == {"Sent": 0, "INBOX": 1, "Projects": 1}  # the extra folder is synced too
    subjects = {e["subject"] for e in cli("timeline", "somsri@siam.example", "--json").json()}
    assert subjects == {"In the inbox", "Filed"}

    status = cli("mailboxes", "status", "--json").json()
    bob = [row for row in status if row["mailbox"] == BOB]
    assert len(bob) == 1 and bob[0]["folder"] is None  # the connection itself
    assert bob[0]["errors"] == 1 and "login failed" in bob[0]["last_error"]
    assert {row["folder"] for row in status if row["mailbox"] == ALICE} == {"Sent", "INBOX", "Projects"}
    assert all(row["last_error"] is None for row in status if row["mailbox"] == ALICE)

    # --mailbox syncs that mailbox only: Bob's failure is not even tried.
    dovecot.deliver(alice, mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Later"))
    only = cli("sync", "--once", "--json", "--mailbox", ALICE, extra_env=env)
    assert only.code == 0, only.stderr
    assert [entry["mailbox"] for entry in only.json()] == [ALICE]
    status = cli("mailboxes", "status", "--json").json()
    assert next(row for row in status if row["mailbox"] == BOB)["errors"] == 1


_NO_DATE_NO_FROM = (
    b"To: alice@acme.example\r\nSubject: Scanned order\r\nMessage-ID: <scan1@copier.example>\r\n"
    b"\r\nsee attachment\r\n"
)


def test_mailboxes_status_names_the_messages_stored_as_malformed(
    cli: CLI, configured: dict[str, str], dovecot: DovecotServer, imap_user: ImapCredentials, tmp_path: Path
) -> None:
    dovecot.deliver(imap_user, mailgen.make(sender="somsri@siam.example", to=ALICE, subject="Fine"))
    dovecot.deliver(imap_user, _NO_DATE_NO_FROM)
    assert cli("sync", "--once", extra_env=configured).code == 0
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(mailgen.make(sender="wang@golden.example", to=ALICE, subject="Fine too"))
    maildir.add(
        mailgen.make(sender="wang@golden.example", to=ALICE, subject="No id", msgid="").replace(
            b"Date: ", b"Date: someday "
        )
    )
    assert cli("import", "maildir", "Maildir").code == 0

    status = cli("mailboxes", "status", "--json")
    assert status.code == 0, status.stderr
    folders = {(row["mailbox"], row["folder"]): row for row in status.json()}
    inbox = folders[(ALICE, "INBOX")]
    assert inbox["malformed"] == 1
    assert inbox["malformed_messages"] == [
        {
            "uid": 2,
            "message_id": "<scan1@copier.example>",
            "subject": "Scanned order",
            "why": "no readable Date; no usable From address",
        }
    ]
    imported = folders[(ALICE, "import:Maildir")]
    assert imported["malformed"] == 1
    assert imported["malformed_messages"][0]["why"] == "no readable Date; no usable Message-ID"
    assert imported["malformed_messages"][0]["uid"] is None

    human = cli("mailboxes", "status")
    assert human.code == 0
    assert "messages stored as malformed" in human.stderr + human.stdout
    assert "Scanned order" in human.stderr + human.stdout
