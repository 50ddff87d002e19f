"""Mail files read with bounded memory: the streamed mbox reader gives the same messages
as Python's `mailbox`, and a backfill stores a batch once it holds `batch_bytes`."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mailgen
import pytest
from sqlmodel import Session

from mailcrm.store.db import Database
from mailcrm.sync.backfill import BatchLimits, backfill
from mailcrm.sync.engine import MailboxIdentity
from mailcrm.sync.mailfiles import MboxSource, RawMessage

ALICE = "alice@acme.example"


def _messages() -> list[bytes]:
    return [
        mailgen.make(sender="wang@golden.example", to=ALICE, subject="Plain"),
        mailgen.make(sender="wang@golden.example", to=ALICE, body="From here on,\nFrom me too\n\n\nend\n"),
        mailgen.make(sender="wang@golden.example", to=ALICE, body="x" * 200_000),  # a line past one read
        mailgen.make(sender="wang@golden.example", to=ALICE, subject="CRLF").replace(b"\n", b"\r\n"),
        mailgen.make(sender="wang@golden.example", to=ALICE, subject="Last, no newline").rstrip(b"\n"),
    ]


def test_the_streamed_mbox_reader_reads_what_python_mailbox_reads(tmp_path: Path) -> None:
    path = tmp_path / "all.mbox"
    archive = mailbox.mbox(path)
    for raw in _messages():
        archive.add(raw)
    archive.close()
    written = mailbox.mbox(path)
    expected = [written.get_bytes(key) for key in written.iterkeys()]
    written.close()
    read = list(MboxSource(path, max_message_bytes=2**20))
    assert all(isinstance(item, RawMessage) for item in read)
    assert [item.data for item in read if isinstance(item, RawMessage)] == expected
    assert read[-1].done == path.stat().st_size


def _identity() -> MailboxIdentity:
    return MailboxIdentity(name=ALICE, owner_id=None, team_addresses=frozenset({ALICE}))


def test_a_backfill_stores_a_batch_once_it_holds_batch_bytes(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five messages of ~100 KB with a 150 KB bound: never more than two in memory."""
    path = tmp_path / "big.mbox"
    archive = mailbox.mbox(path)
    for index in range(5):
        archive.add(
            mailgen.make(sender="wang@golden.example", to=ALICE, subject=f"{index}", body="y" * 100_000)
        )
    archive.close()
    transactions: list[int] = []
    write = db.write

    @contextmanager
    def counting_write() -> Iterator[Session]:
        with write() as session:
            yield session
        transactions.append(1)

    monkeypatch.setattr(db, "write", counting_write)
    result = backfill(
        db, MboxSource(path, 2**20), _identity(), "import", BatchLimits(messages=250, bytes=150_000)
    )
    assert result.stats.new_messages == 5 and result.skipped == []
    assert len(transactions) == 3  # 2 + 2 + 1 messages
