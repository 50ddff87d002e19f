"""The sender against a real SMTP server (aiosmtpd on loopback) and both databases.

Each test plans outbox rows, runs `Sender.send_due` and checks what reached the wire
(envelope, headers, timing) and what the outbox and the timeline recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from sendrunner import OWNER, make_settings, plan, seed_customers, send_batch
from servers.dovecot import TLS_SERVER_NAME, DovecotServer, ImapCredentials, free_port
from servers.smtpd import RecordingHandler, RecordingSMTPServer
from sqlalchemy import insert, select, update

from mailcrm.domain import unsubscribe
from mailcrm.render import TemplateRenderer
from mailcrm.send import sharing
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import ImapAccount, SalespersonSettings, Settings, WebSettings
from mailcrm.store import keys, outbox
from mailcrm.store.db import Database
from mailcrm.store.models import Customer, Message, OutboxItem, Suppression, TimelineEvent, table_of
from mailcrm.store.types import utcnow

HOUR = timedelta(hours=1)


def _sender(db: Database, settings: Settings, templates: Path, **kwargs: Any) -> Sender:
    return Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="test-sender", **kwargs)


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())  # type: ignore[arg-type]


def _parsed(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=default_policy)


async def test_a_due_row_is_rendered_and_sent_once(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    (row,) = _rows(db)
    sender = _sender(db, make_settings(smtpd.port), templates)
    stats = await send_batch(sender)
    assert (stats.claimed, stats.sent) == (1, 1)
    (received,) = smtpd.messages
    assert received.mail_from == OWNER and received.rcpt_tos == ("c0@example.org",)
    assert received.message_id == row.message_id  # fixed at planning
    mail = _parsed(received.content)
    assert mail["From"] == "Alice Example <alice@acme.example>"
    assert mail["To"] == "Customer 0 <c0@example.org>"
    assert mail["Subject"] == "Thank you, Customer!"
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    # Until a web endpoint serves https unsubscribe links, only the signed mailto is offered,
    # and no one-click header points clients at a URL nobody answers.
    with db.read() as session:
        token = unsubscribe.sign(keys.signing_key(session), row.id, "c0@example.org")  # type: ignore[arg-type]
    assert mail["List-Unsubscribe"] == f"<mailto:alice@acme.example?subject=unsubscribe-{token}>"
    assert mail["List-Unsubscribe-Post"] is None
    assert mail["Auto-Submitted"] == "auto-generated"
    (stored,) = _rows(db)
    assert (stored.state, stored.attempts, stored.sender) == ("sent", 1, OWNER)
    with db.read() as session:
        message = session.execute(select(Message)).scalars().one()  # type: ignore[call-overload]
        assert (message.message_id, message.direction, message.subject) == (
            row.message_id,
            "out",
            mail["Subject"],
        )
        assert "thank you for your order" in (message.snippet or "")
        kinds = [e.kind for e in session.execute(select(TimelineEvent)).scalars()]  # type: ignore[call-overload]
        assert kinds == ["email_out"]
    again = _sender(db, make_settings(smtpd.port), templates)
    assert (await send_batch(again)).claimed == 0
    assert len(smtpd.messages) == 1


async def test_without_a_web_address_unsubscribe_is_a_signed_mail_to_the_sender(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    (templates / "thank_you" / "en.txt.j2").write_text("Hi.\nStop these emails: {{ unsubscribe_url }}\n")
    plan(db, seed_customers(db, 2))
    settings = make_settings(smtpd.port).model_copy(update={"web": WebSettings()})
    assert (await send_batch(_sender(db, settings, templates))).sent == 2
    mails = sorted((_parsed(m.content) for m in smtpd.messages), key=lambda m: str(m["To"]))
    headers = [str(m["List-Unsubscribe"]) for m in mails]
    assert all(h.startswith("<mailto:alice@acme.example?subject=unsubscribe-") for h in headers)
    assert headers[0] != headers[1]  # one token per email
    assert mails[0]["List-Unsubscribe-Post"] is None  # one-click needs an https endpoint
    text = mails[0].get_body(("plain",))
    assert text is not None and headers[0].strip("<>") in text.get_content()
    # A second sender (another daemon on the same database) signs with the same stored key.
    with db.read() as session:
        key = keys.signing_key(session)
    found = unsubscribe.find([headers[0]])
    assert found is not None and unsubscribe.verify(key, found, "c0@example.org")
    assert not unsubscribe.verify(key, found, "c1@example.org")


async def test_language_chain_picks_the_customer_language(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    thai = seed_customers(db, 1, language="th")
    other = seed_customers(db, 1, language="fa", start=1)  # no Persian template: owner's English
    plan(db, thai + other)
    await send_batch(_sender(db, make_settings(smtpd.port), templates))
    subjects = {m.rcpt_tos[0]: _parsed(m.content)["Subject"] for m in smtpd.handler.wait_for(2)}
    assert subjects == {"c0@example.org": "ขอบคุณค่ะ Customer", "c1@example.org": "Thank you, Customer!"}


@pytest.mark.parametrize(
    ("verb", "reply"),
    [("DATA", "451 4.3.0 queue full, try later"), ("MAIL", "421 4.7.0 too many connections, try later")],
)
async def test_transient_errors_are_retried_then_delivered_once(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, verb: str, reply: str
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    smtpd.handler.queue_reply(verb, reply)
    settings = make_settings(smtpd.port, retry_base_seconds=60)
    first = await send_batch(_sender(db, settings, templates))
    assert first.retried == 1 and smtpd.messages == []
    (row,) = _rows(db)
    assert row.state == "due" and row.attempts == 1
    assert reply in (row.last_error or "") and "127.0.0.1" in (row.last_error or "")
    assert row.due_at > utcnow() + timedelta(seconds=29)  # backoff: at least half the base delay
    assert row.deadline_at is not None and row.deadline_at > utcnow() + timedelta(days=2)
    assert (await send_batch(_sender(db, settings, templates))).claimed == 0  # not before its time
    second = await send_batch(_sender(db, settings, templates), now=utcnow() + HOUR)
    assert second.sent == 1
    (received,) = smtpd.messages
    (row,) = _rows(db)
    assert (row.state, row.attempts) == ("sent", 2)
    assert received.message_id == row.message_id


async def test_retries_stop_at_the_deadline(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    smtpd.handler.reply_at["MAIL"] = "451 4.4.5 system congested"
    settings = make_settings(smtpd.port, retry_base_seconds=60, retry_deadline="2h")
    now = utcnow()
    for step in range(12):
        await send_batch(_sender(db, settings, templates), now=now + step * HOUR)
    (row,) = _rows(db)
    assert row.state == "failed"
    assert (row.last_error or "").startswith("expired: ")
    assert "451 4.4.5 system congested" in (row.last_error or "")
    assert 2 <= row.attempts <= 4


async def test_a_permanent_error_fails_with_the_servers_reply(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    smtpd.handler.reply_at["DATA"] = "554 5.7.1 message rejected as spam"
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert stats.failed == 1
    (row,) = _rows(db)
    assert row.state == "failed" and row.attempts == 1
    assert (row.last_error or "").startswith("554 5.7.1 message rejected as spam (at dot, 127.0.0.1:")
    with db.read() as session:
        assert session.execute(select(Suppression)).first() is None


async def test_unknown_user_suppresses_the_address(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids)
    smtpd.handler.reply_for_rcpt["c0@example.org"] = "550 5.1.1 no such user here"
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert (stats.failed, stats.sent) == (1, 1)  # the other recipient is unaffected
    bounced = next(r for r in _rows(db) if r.customer_id == ids[0])
    assert bounced.state == "failed" and "550 5.1.1 no such user here" in (bounced.last_error or "")
    with db.read() as session:
        suppression = session.execute(select(Suppression)).scalars().one()  # type: ignore[call-overload]
        assert (suppression.address, suppression.reason) == ("c0@example.org", "hard_bounce")
        events = session.execute(select(TimelineEvent).where(TimelineEvent.kind == "bounced")).scalars().all()  # type: ignore[arg-type]
        assert [e.customer_id for e in events] == [ids[0]]
    smtpd.handler.reset()
    plan(db, ids[:1], rule="win-back", occurrence="nopurchase:2026-01-01")
    later = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert later.skipped == 1 and smtpd.messages == []
    skipped = next(r for r in _rows(db) if r.rule == "win-back")
    assert skipped.state == "skipped" and (skipped.skip_reason or "").startswith("suppressed: c0@example.org")
    assert smtpd.handler.rejections == []  # nothing reached the server


async def test_suppression_after_planning_is_honoured_at_send_time(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    with db.write() as session:
        outbox.suppress(session, "c0@example.org", "unsubscribed")
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert stats.skipped == 1
    assert smtpd.messages == [] and smtpd.handler.rejections == []
    (row,) = _rows(db)
    assert (row.state, row.skip_reason) == ("skipped", "suppressed: c0@example.org (unsubscribed)")


async def test_archived_customer_is_skipped(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    with db.write() as session:
        session.execute(update(table_of(Customer)).values(status="archived"))
    assert (await send_batch(_sender(db, make_settings(smtpd.port), templates))).skipped == 1
    assert smtpd.messages == []
    assert (_rows(db)[0].skip_reason or "").startswith("archived")


async def test_frequency_cap(db: Database, smtpd: RecordingSMTPServer, templates: Path) -> None:
    ids = seed_customers(db, 1)
    for rule in ("one", "two", "three"):
        plan(db, ids, rule=rule)
    settings = make_settings(smtpd.port, connections=3, frequency_cap=2, frequency_window="7d")
    stats = await send_batch(_sender(db, settings, templates))
    assert (stats.sent, stats.skipped) == (2, 1)
    assert len(smtpd.messages) == 2
    (skipped,) = [r for r in _rows(db) if r.state == "skipped"]
    assert (skipped.skip_reason or "").startswith("frequency_cap: 2 automated emails")


async def test_a_template_error_fails_only_its_row(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 3)
    plan(db, ids[:1], template="broken")
    plan(db, ids[1:])
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert (stats.failed, stats.sent) == (1, 2)
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == ["c1@example.org", "c2@example.org"]
    broken = next(r for r in _rows(db) if r.template == "broken")
    assert broken.state == "failed" and broken.attempts == 0  # nothing reached the server
    assert "broken/en.txt.j2:2" in (broken.last_error or "")
    assert "no_such_field" in (broken.last_error or "")


async def test_header_injection_through_the_customer_name(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 2)
    names = {
        ids[0]: "Eve\r\nBcc: victim@evil.example",
        ids[1]: "=?UTF-8?Q?=0A?=Bcc: x@evil.example",
    }
    with db.write() as session:
        for cid, name in names.items():
            session.execute(
                update(table_of(Customer)).where(table_of(Customer).c.id == cid).values(name=name)
            )
    plan(db, ids)
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert (stats.failed, stats.sent) == (1, 1)
    refused = next(r for r in _rows(db) if r.customer_id == ids[0])
    assert refused.state == "failed" and "line break" in (refused.last_error or "")
    (received,) = smtpd.messages
    assert received.rcpt_tos == ("c1@example.org",)
    mail = _parsed(received.content)
    assert mail.get_all("Bcc") is None
    assert len(mail.get_all("To") or []) == 1
    assert [a.addr_spec for a in mail["To"].addresses] == ["c1@example.org"]
    assert mail["To"].addresses[0].display_name == names[ids[1]]  # shown literally, not decoded


async def test_follow_up_is_cancelled_once_the_customer_replied(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 2)
    sent_at = utcnow() - timedelta(days=3)
    parents = {cid: f"<first-{cid}@acme.example>" for cid in ids}
    with db.write() as session:
        for cid, message_id in parents.items():
            pk = session.execute(
                insert(table_of(Message))
                .values(message_id=message_id, thread_key=message_id, direction="out", subject="Our offer",
                        sent_at=sent_at, created_at=sent_at)
                .returning(table_of(Message).c.id)
            ).scalar_one()  # fmt: skip
            session.execute(
                insert(table_of(TimelineEvent)).values(
                    customer_id=cid, kind="email_out", at=sent_at, message_pk=pk, payload={}
                )
            )
        session.execute(
            insert(table_of(TimelineEvent)).values(
                customer_id=ids[0], kind="reply", at=sent_at + HOUR, message_pk=None, payload={}
            )
        )
    for cid in ids:
        plan(db, [cid], rule="follow-up", template="follow_up", occurrence="followup:abc:1",
             in_reply_to=parents[cid])  # fmt: skip
    stats = await send_batch(_sender(db, make_settings(smtpd.port), templates))
    assert (stats.cancelled, stats.sent) == (1, 1)
    replied = next(r for r in _rows(db) if r.customer_id == ids[0])
    assert (replied.state, replied.skip_reason) == (
        "cancelled",
        "replied: the customer answered the email this follows up",
    )
    (received,) = smtpd.messages
    assert received.rcpt_tos == ("c1@example.org",)
    mail = _parsed(received.content)
    assert mail["In-Reply-To"] == parents[ids[1]]
    assert mail["References"] == parents[ids[1]]
    assert mail["Subject"] == "Re: Our offer"
    with db.read() as session:
        stored = (
            session.execute(select(Message).where(Message.message_id == received.message_id)).scalars().one()
        )  # type: ignore[arg-type]
        assert stored.thread_key == parents[ids[1]]  # filed under the conversation it follows


async def test_rate_limit_spaces_transactions(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 4)
    plan(db, ids)
    settings = make_settings(smtpd.port, connections=3, per_minute=60)  # one per second
    started = time.monotonic()
    assert (await send_batch(_sender(db, settings, templates))).sent == 4
    assert time.monotonic() - started >= 2.8
    stamps = sorted(m.received_at for m in smtpd.messages)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 0.9 for gap in gaps), gaps


async def test_daily_cap_defers_the_rest(db: Database, smtpd: RecordingSMTPServer, templates: Path) -> None:
    ids = seed_customers(db, 3)
    plan(db, ids)
    settings = make_settings(smtpd.port, connections=1, per_day=2)
    stats = await send_batch(_sender(db, settings, templates))
    assert (stats.sent, stats.deferred) == (2, 1)
    (waiting,) = [r for r in _rows(db) if r.state == "due"]
    first_sent = min(r.sent_at for r in _rows(db) if r.sent_at is not None)
    assert waiting.attempts == 0
    assert abs((waiting.due_at - (first_sent + timedelta(hours=24))).total_seconds()) < 2
    # A restart does not forget what was sent: the cap still holds.
    again = await send_batch(_sender(db, settings, templates), now=utcnow() + HOUR)
    assert again.claimed == 0 and len(smtpd.messages) == 2


async def test_daily_cap_holds_across_concurrent_connections(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 20)
    plan(db, ids)
    settings = make_settings(smtpd.port, connections=4, per_day=5)
    stats = await send_batch(_sender(db, settings, templates))
    assert (stats.sent, stats.deferred, stats.failed) == (5, 15, 0)
    assert len(smtpd.messages) == 5
    rows = _rows(db)
    assert sorted(r.state for r in rows) == ["due"] * 15 + ["sent"] * 5
    assert all(r.attempts == 0 for r in rows if r.state == "due")  # waiting, not failed or retried


async def test_daily_cap_holds_across_sender_processes(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 20)
    plan(db, ids)
    settings = make_settings(smtpd.port, connections=4, per_day=5)
    senders = [
        Sender(
            db,
            sharing.sender_config(settings, slot, 2),
            TemplateRenderer(templates),
            worker_id=f"test-{slot}",
        )
        for slot in range(2)
    ]
    results = await asyncio.gather(*(send_batch(sender) for sender in senders))
    sent = sum(stats.sent for stats in results)
    assert 5 - 2 <= sent <= 5  # a process leaves room for the other's unstarted rows
    assert len(smtpd.messages) == sent
    assert sum(stats.failed for stats in results) == 0
    rows = _rows(db)
    assert sorted(r.state for r in rows) == ["due"] * (20 - sent) + ["sent"] * sent


async def test_a_dead_pooled_connection_is_replaced(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids[:1])
    sender = _sender(db, make_settings(smtpd.port, connections=1), templates)
    try:
        assert (await sender.send_due()).sent == 1
        smtpd.stop()  # drops the pooled connection
        smtpd.start()
        plan(db, ids[1:])
        assert (await sender.send_due()).sent == 1
    finally:
        await sender.close()
    assert [r.attempts for r in _rows(db)] == [1, 1]


class _DroppingHandler(RecordingHandler):
    """Accepts the message, then drops the connection instead of answering the final dot."""

    drops = 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.drops > 0:
            self.drops -= 1
            server.transport.abort()
        return reply


@pytest.mark.parametrize("policy", ["resend", "hold"])
async def test_connection_lost_after_the_final_dot(db: Database, templates: Path, policy: str) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    with RecordingSMTPServer(_DroppingHandler()) as server:
        settings = make_settings(server.port, ambiguous=policy)
        first = await send_batch(_sender(db, settings, templates))
        second = await send_batch(_sender(db, settings, templates), now=utcnow() + HOUR)
        third = await send_batch(_sender(db, settings, templates), now=utcnow() + 2 * HOUR)
        received = server.messages
    (row,) = _rows(db)
    if policy == "resend":
        assert (first.retried, second.sent, third.claimed) == (1, 1, 0)
        assert len(received) == 2  # at most one extra copy...
        assert {m.message_id for m in received} == {row.message_id}  # ...with the same Message-ID
        assert (row.state, row.ambiguous_attempts, row.attempts) == ("sent", 1, 2)
    else:
        assert (first.unknown, second.claimed) == (1, 0)
        assert len(received) == 1
        assert row.state == "delivery_unknown" and "connection lost" in (row.last_error or "")


async def test_graceful_stop_finishes_in_flight_and_releases_the_rest(db: Database, templates: Path) -> None:
    class Slow(RecordingHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(0.3)
            return await super().handle_DATA(server, session, envelope)

    ids = seed_customers(db, 30)
    plan(db, ids)
    with RecordingSMTPServer(Slow()) as server:
        sender = _sender(db, make_settings(server.port, connections=2), templates)
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, interval=0.1))
        await asyncio.to_thread(server.handler.wait_for, 3)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=10)
        assert time.monotonic() - started < 10
        received = server.messages
    rows = _rows(db)
    assert not [r for r in rows if r.state == "claimed"]
    sent = {r.message_id for r in rows if r.state == "sent"}
    assert sent == {m.message_id for m in received} and len(received) == len(sent)
    assert 3 <= len(sent) < 30
    assert all(r.state in ("sent", "due") for r in rows)


async def test_starttls_required_but_not_offered(
    db: Database, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that offers no STARTTLS: the send fails naming host and reason; no AUTH
    ever goes out in the clear."""
    lines: list[bytes] = []

    async def fake_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        for _ in range(20):
            line = await reader.readline()
            if not line:
                break
            lines.append(line)
            verb = line.split(b" ")[0].strip().upper()
            if verb == b"EHLO":
                writer.write(b"250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(fake_smtp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-value")
    try:
        ids = seed_customers(db, 1)
        plan(db, ids)
        base = make_settings(port, security="starttls")
        person = base.salespeople[0]
        assert person.smtp is not None
        account = person.smtp.model_copy(update={"username": "alice", "password_env": "TEST_SMTP_PASSWORD"})
        settings = base.model_copy(update={"salespeople": [person.model_copy(update={"smtp": account})]})
        stats = await send_batch(_sender(db, settings, templates))
    finally:
        server.close()
        await server.wait_closed()
    assert stats.retried == 1
    (row,) = _rows(db)
    error = row.last_error or ""
    assert f"127.0.0.1:{port}" in error and "does not offer STARTTLS" in error
    assert not any(line.upper().startswith((b"AUTH", b"MAIL")) for line in lines)
    assert not any(b"s3cret" in line for line in lines)


@pytest.fixture
def tls_smtpd(tls_ca: trustme.CA) -> Iterator[RecordingSMTPServer]:
    """The recording server behind implicit TLS with a certificate for `localhost`."""
    server = RecordingSMTPServer()
    ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(TLS_SERVER_NAME).configure_cert(ssl_context)
    controller = Controller(server.handler, hostname=server.host, port=server.port, ssl_context=ssl_context)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


async def test_tls_certificates_are_verified(
    db: Database, tls_smtpd: RecordingSMTPServer, tls_ca_file: Path, templates: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    base = make_settings(tls_smtpd.port, security="tls")
    person = base.salespeople[0]
    assert person.smtp is not None

    def with_account(**changes: Any) -> Settings:
        account = person.smtp.model_copy(update={"host": TLS_SERVER_NAME, **changes})  # type: ignore[union-attr]
        return base.model_copy(update={"salespeople": [person.model_copy(update={"smtp": account})]})

    refused = await send_batch(_sender(db, with_account(), templates))
    assert refused.retried == 1 and tls_smtpd.messages == []
    (row,) = _rows(db)
    assert "certificate verify failed" in (row.last_error or "").lower()
    assert f"{TLS_SERVER_NAME}:{tls_smtpd.port}" in (row.last_error or "")
    trusted = await send_batch(_sender(db, with_account(ca_file=tls_ca_file), templates), now=utcnow() + HOUR)
    assert trusted.sent == 1 and len(tls_smtpd.messages) == 1


async def test_copy_to_sent_folder(
    db: Database,
    smtpd: RecordingSMTPServer,
    templates: Path,
    dovecot: DovecotServer,
    imap_user: ImapCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_user.password)
    ids = seed_customers(db, 2)
    plan(db, ids)
    base = make_settings(smtpd.port, copy_to_sent=True)
    imap = ImapAccount(
        host=imap_user.host,
        port=imap_user.port,
        security="plain",
        username=imap_user.username,
        password_env="TEST_IMAP_PASSWORD",
        timeout_seconds=10,
    )
    person: SalespersonSettings = base.salespeople[0].model_copy(update={"imap": imap})
    settings = base.model_copy(update={"salespeople": [person]})
    assert (await send_batch(_sender(db, settings, templates))).sent == 2
    stored = b"".join(path.read_bytes() for path in imap_user.maildir.rglob("*") if path.is_file())
    for row in _rows(db):
        assert row.message_id.encode() in stored
    # A broken IMAP account never affects the send. (A wrong password would
    # make Dovecot slow down later logins from loopback: a closed port breaks it instead.)
    plan(db, ids, rule="other")
    closed = imap.model_copy(update={"port": free_port("127.0.0.1")})
    settings = base.model_copy(update={"salespeople": [person.model_copy(update={"imap": closed})]})
    assert (await send_batch(_sender(db, settings, templates))).sent == 2
    assert len(smtpd.messages) == 4
    assert {r.state for r in _rows(db)} == {"sent"}


async def test_an_unreachable_server_is_not_hammered(db: Database, templates: Path) -> None:
    ids = seed_customers(db, 6)
    plan(db, ids)
    settings = make_settings(free_port("127.0.0.1"), connections=2)
    stats = await send_batch(_sender(db, settings, templates))
    assert stats.retried + stats.deferred == 6
    assert 1 <= stats.retried <= 2  # one attempt per connection at most, then the account pauses
    rows = _rows(db)
    assert all(r.state == "due" and "Error connecting to 127.0.0.1" in (r.last_error or "") for r in rows)
    assert sum(r.attempts for r in rows) == stats.retried
