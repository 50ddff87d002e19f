"""Smoke tests proving the real-server fixtures work before sync and sending tests rely on them."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest
from aioimaplib import IMAP4, Response
from servers.dovecot import DovecotServer, ImapCredentials
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import create_engine, make_url, text

IMAP_TIMEOUT = 10.0
SUBJECT = "Grüße aus Köln – Angebot für Ωmega 😀"


def raw_message(message_id: str, subject: str = SUBJECT) -> bytes:
    """A message with a raw UTF-8 (RFC 6532) subject, to prove bytes survive unchanged."""
    return (
        "From: Jörg Müller <joerg@example.test>\r\n"
        "To: sales@example.test\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 03 Jun 2024 10:00:00 +0200\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Hallo, anbei das Angebot.\r\n"
    ).encode()


def fetched_literals(response: Response) -> list[bytes]:
    """Literal payloads of a FETCH response: aioimaplib yields them as bytearray lines."""
    return [bytes(line) for line in response.lines if isinstance(line, bytearray)]


@contextlib.asynccontextmanager
async def imap_session(creds: ImapCredentials) -> AsyncIterator[IMAP4]:
    """A logged-in aioimaplib client that is logged out (best effort) afterwards."""
    client = IMAP4(creds.host, creds.port, timeout=IMAP_TIMEOUT)
    try:
        async with asyncio.timeout(IMAP_TIMEOUT):
            await client.wait_hello_from_server()
            response = await client.login(creds.username, creds.password)
        assert response.result == "OK", response
        yield client
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await client.logout()
        if client.protocol.transport is not None:
            client.protocol.transport.close()


async def fetch_inbox(creds: ImapCredentials) -> tuple[list[bytes], list[bytes]]:
    """All INBOX messages and their FLAGS lines, read without setting \\Seen."""
    async with imap_session(creds) as client, asyncio.timeout(IMAP_TIMEOUT):
        selected = await client.select("INBOX")
        assert selected.result == "OK", selected
        bodies = await client.uid("fetch", "1:*", "(BODY.PEEK[])")
        assert bodies.result == "OK", bodies
        flags = await client.uid("fetch", "1:*", "(FLAGS)")
        assert flags.result == "OK", flags
    flag_lines = [bytes(line) for line in flags.lines if b" FETCH (" in line]
    return fetched_literals(bodies), flag_lines


async def test_dovecot_serves_delivered_utf8_message_unseen(
    dovecot: DovecotServer, imap_user: ImapCredentials
) -> None:
    message_id = email.utils.make_msgid(domain="example.test")
    dovecot.deliver(imap_user, raw_message(message_id))

    bodies, flag_lines = await fetch_inbox(imap_user)

    assert len(bodies) == 1
    assert message_id.encode() in bodies[0]
    assert f"Subject: {SUBJECT}".encode() in bodies[0]
    assert len(flag_lines) == 1
    assert b"\\Seen" not in flag_lines[0], flag_lines


async def test_dovecot_capabilities_for_sync(imap_user: ImapCredentials) -> None:
    async with imap_session(imap_user) as client, asyncio.timeout(IMAP_TIMEOUT):
        assert client.has_capability("IDLE")
        # The login response's capability list is merged loosely; ask again for a clean set.
        await client.protocol.capability()
        for capability in ("IDLE", "SPECIAL-USE", "CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE"):
            assert client.has_capability(capability), capability
        listing = await client.list('""', "*")
    assert listing.result == "OK", listing
    special = {b"\\Sent": b"Sent", b"\\Drafts": b"Drafts", b"\\Trash": b"Trash", b"\\Junk": b"Junk"}
    for flag, name in special.items():
        assert any(flag in line and line.endswith(name) for line in listing.lines), listing


async def test_dovecot_survives_kill_and_restart(dovecot: DovecotServer, imap_user: ImapCredentials) -> None:
    message_id = email.utils.make_msgid(domain="example.test")
    dovecot.deliver(imap_user, raw_message(message_id))
    port = dovecot.port

    dovecot.kill()
    assert not dovecot.running
    with pytest.raises(OSError):
        async with asyncio.timeout(IMAP_TIMEOUT):
            await asyncio.open_connection(dovecot.host, port)
    # Mail arriving while the server is down is picked up after the restart.
    late_id = email.utils.make_msgid(domain="example.test")
    dovecot.deliver(imap_user, raw_message(late_id, subject="while down"))
    await asyncio.to_thread(dovecot.restart)

    assert dovecot.running
    assert dovecot.port == port
    bodies, _ = await fetch_inbox(imap_user)
    assert len(bodies) == 2
    assert message_id.encode() in bodies[0]
    assert late_id.encode() in bodies[1]


async def test_smtpd_records_envelope_and_message_id(smtpd: RecordingSMTPServer) -> None:
    message = EmailMessage()
    message["From"] = "Sales <sales@example.test>"
    message["To"] = "Kunde <kunde@example.test>"
    message["Subject"] = SUBJECT
    message["Message-ID"] = message_id = email.utils.make_msgid(domain="example.test")
    message.set_content("Hallo!")

    async with asyncio.timeout(IMAP_TIMEOUT):
        await aiosmtplib.send(
            message,
            hostname=smtpd.host,
            port=smtpd.port,
            sender="bounces@example.test",
            recipients=["kunde@example.test", "cc@example.test"],
            timeout=IMAP_TIMEOUT,
        )

    [received] = smtpd.handler.wait_for(1)
    assert received.mail_from == "bounces@example.test"
    assert received.rcpt_tos == ("kunde@example.test", "cc@example.test")
    assert received.message_id == message_id
    assert message_id.encode() in received.content


async def test_smtpd_scripted_replies(smtpd: RecordingSMTPServer) -> None:
    smtpd.handler.reply_for_rcpt["nobody@example.test"] = "550 5.1.1 no such user"
    smtpd.handler.queue_reply("DATA", "451 4.3.0 try later")
    message = EmailMessage()
    message["From"] = "sales@example.test"
    message["Subject"] = "retry"
    message["Message-ID"] = email.utils.make_msgid(domain="example.test")
    message.set_content("x")
    recipients = ["kunde@example.test", "nobody@example.test"]

    async with asyncio.timeout(IMAP_TIMEOUT):
        with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
            await aiosmtplib.send(message, hostname=smtpd.host, port=smtpd.port, recipients=recipients)
        assert excinfo.value.code == 451
        errors, _ = await aiosmtplib.send(
            message, hostname=smtpd.host, port=smtpd.port, recipients=recipients
        )

    assert errors["nobody@example.test"].code == 550
    [received] = smtpd.messages
    assert received.rcpt_tos == ("kunde@example.test",)
    assert [verb for verb, _, _ in smtpd.handler.rejections] == ["RCPT", "DATA", "RCPT"]


def test_postgres_url_points_at_session_database(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.database is not None
    assert url.database.startswith("mailcrm_test_")
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            assert conn.execute(text("select current_database()")).scalar_one() == url.database
    finally:
        engine.dispose()
