"""Backfill from files (an mbox such as a Gmail Takeout export, or a Maildir) through the
same parse, match and store path as IMAP sync.

Memory stays flat whatever the input: `mailfiles` reads one message at a time and never
past the message cap, and a batch is stored as soon as it holds `sync.batch_messages`
messages or `sync.batch_bytes` bytes, whichever comes first (25 messages of 43 MB
once made a 250-message batch of 1.2 GB). Messages and entries that cannot be imported
are logged as warnings where they are met and listed in the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mailcrm.store.db import Database
from mailcrm.store.mail import IngestStats, ingest
from mailcrm.sync.engine import MailboxIdentity, log_sender_issues, prepare_raw
from mailcrm.sync.mailfiles import MailSource, RawMessage, Skipped

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When a batch is stored: at `messages` messages or `bytes` bytes."""

    messages: int = 250
    bytes: int = 16 * 2**20


@dataclass
class BackfillResult:
    """What was stored, and what was left out with the reason."""

    stats: IngestStats = field(default_factory=IngestStats)
    skipped: list[Skipped] = field(default_factory=list)


def backfill(
    db: Database,
    source: MailSource,
    identity: MailboxIdentity,
    folder: str,
    limits: BatchLimits = BatchLimits(),
    on_progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Store every message of `source`; re-running it adds nothing."""
    result = BackfillResult()
    batch: list[bytes] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch_bytes
        items = prepare_raw(batch)
        batch.clear()
        batch_bytes = 0
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
        result.stats.add(stats)

    for item in source:
        if isinstance(item, RawMessage):
            batch.append(item.data)
            batch_bytes += len(item.data)
            if len(batch) >= limits.messages or batch_bytes >= limits.bytes:
                flush()
        else:
            log.warning("skipped %s: %s", item.where, item.why)
            result.skipped.append(item)
        if on_progress is not None:
            on_progress(item.done)
    if batch:
        flush()
    return result
