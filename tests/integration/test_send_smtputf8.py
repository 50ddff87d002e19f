"""An address with a non-ASCII local part (üser@example.org) goes out with SMTPUTF8 where the
server offers it; where it does not, that one email fails with the reason and the rest of
the batch is sent. Against real aiosmtpd servers with and without `enable_SMTPUTF8`."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_string
from email.policy import SMTPUTF8
from pathlib import Path
from typing import Any

import pytest
from sendrunner import make_settings, plan, seed_customers, send_due
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select, update

from mailcrm.store.db import Database
from mailcrm.store.models import EmailAddress, OutboxItem, Suppression, table_of

WIDE = "üser@example.org"


class AsciiOnlyServer(RecordingSMTPServer):
    def controller_options(self) -> dict[str, Any]:
        return {"enable_SMTPUTF8": False}


@pytest.fixture
def ascii_smtpd() -> Iterator[RecordingSMTPServer]:
    server = AsciiOnlyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _two_customers_one_wide(db: Database) -> list[int]:
    ids = seed_customers(db, 2)
    addresses = table_of(EmailAddress)
    with db.write() as session:
        session.execute(update(addresses).where(addresses.c.customer_id == ids[0]).values(address=WIDE))
    plan(db, ids)
    return ids


def _states(db: Database) -> dict[int, OutboxItem]:
    with db.read() as session:
        rows = session.execute(select(OutboxItem)).scalars()  # type: ignore[arg-type]
        return {row.customer_id: row for row in rows}


async def test_sent_with_smtputf8_when_offered(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = _two_customers_one_wide(db)
    stats = await send_due(db, make_settings(smtpd.port), templates)
    assert stats.sent == 2
    wide = next(m for m in smtpd.messages if m.rcpt_tos == (WIDE,))
    assert "SMTPUTF8" in wide.mail_options
    headers = message_from_string(wide.content.decode("utf-8"), policy=SMTPUTF8)
    assert headers["To"].addresses[0].addr_spec == WIDE  # UTF-8 in the header itself (RFC 6532)
    other = next(m for m in smtpd.messages if m.rcpt_tos == ("c1@example.org",))
    assert "SMTPUTF8" not in other.mail_options
    assert {row.state for row in _states(db).values()} == {"sent"} and len(ids) == 2


async def test_fails_that_email_alone_when_not_offered(
    db: Database, ascii_smtpd: RecordingSMTPServer, templates: Path
) -> None:
    ids = _two_customers_one_wide(db)
    stats = await send_due(db, make_settings(ascii_smtpd.port), templates)
    assert (stats.sent, stats.failed, stats.retried) == (1, 1, 0)
    assert [m.rcpt_tos for m in ascii_smtpd.messages] == [("c1@example.org",)]
    rows = _states(db)
    failed, sent = rows[ids[0]], rows[ids[1]]
    assert sent.state == "sent"
    assert failed.state == "failed" and failed.attempts == 0
    error = failed.last_error or ""
    assert f"the address {WIDE} has a non-ASCII local part and needs SMTPUTF8" in error
    assert f"127.0.0.1:{ascii_smtpd.port} does not offer" in error
    with db.read() as session:
        suppressed = session.execute(select(table_of(Suppression))).all()
    assert suppressed == []  # the address is not at fault: not suppressed
