"""Backfill from files (an mbox such as a Gmail Takeout export, or a Maildir) through the
same parse, match and store path as IMAP sync."""

from __future__ import annotations

import mailbox
from collections.abc import Callable, Iterator
from pathlib import Path

from mailcrm.errors import ImportFileError
from mailcrm.store.db import Database
from mailcrm.store.mail import IngestStats, ingest
from mailcrm.sync.engine import MailboxIdentity, log_sender_issues, prepare_raw

BATCH = 250


def _raw_messages(source: mailbox.Mailbox[mailbox.Message]) -> Iterator[bytes]:
    for key in source.iterkeys():
        try:
            yield source.get_bytes(key)
        except (OSError, KeyError):
            continue


def open_source(kind: str, path: Path) -> tuple[mailbox.Mailbox[mailbox.Message], int]:
    """The mailbox and its message count; a clear error when the path is wrong."""
    if kind == "mbox":
        if not path.is_file():
            raise ImportFileError(f"{path}: not an mbox file", hint="give the path of a .mbox file")
        source: mailbox.Mailbox[mailbox.Message] = mailbox.mbox(path, create=False)
    else:
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ImportFileError(
                f"{path}: not a Maildir (no cur/ or new/ folder)", hint="give the Maildir's top folder"
            )
        source = mailbox.Maildir(path, factory=None, create=False)
    return source, len(source)


def backfill(
    db: Database,
    source: mailbox.Mailbox[mailbox.Message],
    identity: MailboxIdentity,
    folder: str,
    on_progress: Callable[[int], None] | None = None,
) -> IngestStats:
    """Store every message of `source`; re-running it adds nothing."""
    total = IngestStats()
    batch: list[bytes] = []

    def flush() -> None:
        items = prepare_raw(batch)
        with db.write() as session:
            stats = ingest(
                session,
                items,
                mailbox=identity.name,
                folder=folder,
                owner_id=identity.owner_id,
                team_addresses=identity.team_addresses,
                policy=identity.policy,
            )
        log_sender_issues(stats, identity.name)
        total.add(stats)
        if on_progress is not None:
            on_progress(total.messages)
        batch.clear()

    for raw in _raw_messages(source):
        batch.append(raw)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return total
