"""`ImapClient.changes_since` over canned replies (no server): a VANISHED set the parser
cannot read, such as one with ``*`` (RFC 7162 forbids it), is reported, not dropped unnoticed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from mailcrm.imap.client import ImapClient
from mailcrm.imap.connection import Reply
from mailcrm.imap.params import ImapParams
from mailcrm.imap.parse import FlagUpdate, Line
from mailcrm.settings import SecretRef

ACCOUNT = ImapParams(
    host="imap.example", port=993, username="alice@example.com", secret=SecretRef(password_env="UNUSED")
)


def _client(lines: list[Line], sent: list[str]) -> ImapClient:
    """A client with QRESYNC on and INBOX selected whose one command returns ``lines``."""
    client = ImapClient(ACCOUNT)
    conn = client.connection
    conn.capabilities = frozenset({"IMAP4REV1", "CONDSTORE", "QRESYNC", "ENABLE"})
    conn.qresync_enabled = True
    conn.selected = "INBOX"

    async def run(what: str, make: Callable[[], Any], **kwargs: Any) -> Reply:
        sent.append(what)
        return Reply("OK", lines, "OK Fetch completed.")

    conn.run = run  # type: ignore[method-assign]
    return client


async def test_a_vanished_set_with_a_star_is_logged_once_with_folder_and_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[str] = []
    client = _client(
        [
            b"* 2 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (91))",
            b"* VANISHED (EARLIER) 3,7:*",
            b"* VANISHED (EARLIER) 9",
        ],
        sent,
    )
    with caplog.at_level(logging.WARNING, logger="mailcrm.imap"):
        changes = await client.changes_since(90, 10)

    assert sent == ["UID FETCH (CHANGEDSINCE)"]
    assert changes.flags == [FlagUpdate(5, frozenset({"\\Seen"}), 91)]
    assert changes.vanished is None  # unknown: the sync compares UIDs instead of trusting a part
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    record = warnings[0]
    message = record.getMessage()
    assert "INBOX" in message and "alice@example.com" in message
    assert "* VANISHED (EARLIER) 3,7:*" in message and "comparing UIDs" in message
    assert getattr(record, "action", None) == "imap_vanished_unreadable"
    assert getattr(record, "folder", None) == "INBOX"


async def test_several_unreadable_lines_still_make_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = _client([b"* VANISHED 1:*", b"VANISHED *"], [])
    with caplog.at_level(logging.WARNING, logger="mailcrm.imap"):
        changes = await client.changes_since(90, 10)
    assert changes.vanished is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "* VANISHED 1:*" in warnings[0].getMessage() and "1 more" in warnings[0].getMessage()


async def test_readable_vanished_sets_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    client = _client([b"* VANISHED (EARLIER) 3,7:8", b"* 1 FETCH (UID 2 FLAGS () MODSEQ (95))"], [])
    with caplog.at_level(logging.DEBUG, logger="mailcrm.imap"):
        changes = await client.changes_since(90, 10)
    assert changes.vanished == [(3, 3), (7, 8)]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
