"""No duplicate Sent copies: with `imap.server_files_sent: true` mailcrm makes no Sent copy of its own
(`sending.copy_to_sent` on), and the copy the provider files is recognised by its
Message-ID: one message on the timeline, not two. Real Dovecot, real aiosmtpd."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
import test_sync
from sendrunner import make_settings, plan, seed_customers, write_templates
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select
from test_sync import ALICE, MailEnv
from test_sync_sent_confirm import _append_to_sent

from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.store.models import Message, MessageLocation, OutboxItem

mail_env = test_sync.mail_env  # Alice and Bob on a private Dovecot, SQLite store


def _stored_in_maildir(env: MailEnv) -> bytes:
    return b"".join(path.read_bytes() for path in env.alice.maildir.rglob("*") if path.is_file())


def test_server_files_sent_skips_the_copy_and_the_servers_copy_is_recognised(
    mail_env: MailEnv, smtpd: RecordingSMTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = mail_env
    alice = env.settings.salespeople[0]
    assert alice.email == ALICE and alice.imap is not None
    imap = alice.imap.model_copy(update={"server_files_sent": True})
    base = make_settings(smtpd.port, copy_to_sent=True)
    person = alice.model_copy(update={"imap": imap, "smtp": base.salespeople[0].smtp})
    settings = env.settings.model_copy(
        update={"salespeople": [person, *env.settings.salespeople[1:]], "sending": base.sending}
    )
    env = dataclasses.replace(env, settings=settings)
    customer_ids = seed_customers(env.db, 2, owner=ALICE)
    plan(env.db, customer_ids)

    async def send() -> int:
        sender = Sender(
            env.db, sender_config(settings), TemplateRenderer(write_templates(tmp_path / "templates"))
        )
        try:
            return (await asyncio.wait_for(sender.send_due(), timeout=60)).sent
        finally:
            await sender.close()  # waits for background Sent copies

    caplog.set_level(logging.DEBUG, logger="mailcrm.send.sentcopy")
    assert asyncio.run(send()) == 2
    received = smtpd.handler.wait_for(2)
    with env.db.read() as session:
        message_ids = list(session.execute(select(OutboxItem.message_id)).scalars())
    assert len(message_ids) == 2
    stored = _stored_in_maildir(env)
    assert not any(mid.encode() in stored for mid in message_ids)  # no mailcrm copy in Sent
    explained = [r for r in caplog.records if "server_files_sent" in r.getMessage()]
    assert len(explained) == 1 and explained[0].levelno == logging.DEBUG  # once, not per message
    assert ALICE in explained[0].getMessage()

    first = received[0]  # the provider files the bytes it was given, as Gmail does
    asyncio.run(_append_to_sent(env, first.content))
    results = asyncio.run(env.worker().sync_once())
    sent = next(r for r in results if r.folder == "Sent").stats
    assert (sent.messages, sent.new_messages) == (1, 0)  # seen, and known by its Message-ID

    with env.db.read() as session:
        copies = session.execute(
            select(Message.id, MessageLocation.folder)
            .join(MessageLocation, MessageLocation.message_pk == Message.id)  # type: ignore[arg-type]
            .where(Message.message_id == first.message_id)
        ).all()
        per_message = session.execute(
            select(Message.message_id).where(Message.message_id.in_(message_ids))  # type: ignore[union-attr]
        ).all()
    assert [folder for _, folder in copies] == ["Sent"]  # the server's copy, linked to the sent message
    assert len(per_message) == 2  # one message row each: the sync added none
    assert env.kinds(first.rcpt_tos[0]) == ["email_out"]  # exactly one entry on the timeline
