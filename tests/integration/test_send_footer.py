"""The email a Thai customer receives from a template that forgot the unsubscribe link carries
a footer line with the link, in Thai; at the wire, through the real sender."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from sendrunner import make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer

from mailcrm.store.db import Database


def _text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def test_a_thai_customer_gets_the_footer_in_thai(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    plan(db, seed_customers(db, 1, language="th"))
    stats = await send_due(db, make_settings(smtpd.port), templates)
    assert stats.sent == 1
    text = _text(smtpd.messages[0].content)
    assert "ขอบคุณสำหรับการสั่งซื้อ" in text  # the Thai template (it has no link of its own)
    # Until the web service serves an HTTPS unsubscribe page, the link is the signed mailto
    # that the List-Unsubscribe header carries too.
    (line,) = [line for line in text.splitlines() if "?subject=unsubscribe-" in line]
    assert line.startswith("ไม่ต้องการรับอีเมลลักษณะนี้? ยกเลิกการรับอีเมล: mailto:")
    message = message_from_bytes(smtpd.messages[0].content, policy=default_policy)
    assert line.split(": ", 1)[1] == str(message["List-Unsubscribe"]).strip("<>")
