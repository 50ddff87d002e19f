"""Syncing one IMAP folder into the store, incrementally and resumably.

    select folder ──> UIDVALIDITY same as cursor? ──no──> reset cursor (log old/new)
         │                     │ yes                            │
         └─────────────────────┴──── UID SEARCH UID last+1:* <──┘
                                          │
              ┌── fetch batch (BODY.PEEK[], bounded by count and bytes) ──┐
              │   parse + classify (pure, in a worker thread)             │
              │   ingest + advance cursor  ── ONE transaction ──          │
              └──────────────────────── next batch ───────────────────────┘

Invariants:
- The cursor (last UID) moves only in the transaction that stored the batch it
  covers: a crash loses no message, and replays at most the batch in flight, which
  the store ignores (one message per Message-ID).
- A UIDVALIDITY change voids every UID: the folder is read again from the start;
  Message-ID (or a stable header hash when it is missing) keeps it from doubling.
- Fetching uses BODY.PEEK[], so syncing never marks mail as read.
- The next batch is fetched while the current one is parsed and stored; at most
  two batches are in memory, so memory does not grow with the mailbox.
- Database work runs in a worker thread and holds its transaction only while writing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailcrm.domain.classify import classify
from mailcrm.domain.matching import DEFAULT_POLICY, MatchPolicy
from mailcrm.domain.messages import parse_message
from mailcrm.imap.client import ImapClient
from mailcrm.imap.parse import FetchedMessage
from mailcrm.store import cursors
from mailcrm.store.db import Database
from mailcrm.store.mail import IncomingMessage, IngestStats, ingest

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""progress(folder, done, total) after every stored batch."""


@dataclass(frozen=True)
class MailboxIdentity:
    """Whose mailbox this is, and who counts as "us" when deciding direction."""

    name: str  # the salesperson's email: the mailbox key in cursors and messages
    owner_id: int | None
    team_addresses: frozenset[str]
    policy: MatchPolicy = DEFAULT_POLICY


@dataclass
class FolderResult:
    folder: str
    uidvalidity: int
    fetched: int = 0
    stats: IngestStats = field(default_factory=IngestStats)
    uidvalidity_changed: bool = False


def prepare_raw(raws: Sequence[bytes], uids: Sequence[int | None] | None = None) -> list[IncomingMessage]:
    """Parse and classify raw messages (CPU work: run it off the event loop)."""
    items = []
    for index, raw in enumerate(raws):
        parsed = parse_message(raw)
        uid = uids[index] if uids is not None else None
        items.append(IncomingMessage(parsed=parsed, classification=classify(parsed), uid=uid))
    return items


def _prepare(batch: Sequence[FetchedMessage]) -> list[IncomingMessage]:
    return [
        IncomingMessage(
            parsed=(parsed := parse_message(fetched.raw)),
            classification=classify(parsed),
            uid=fetched.uid,
            flags=fetched.flags,
            modseq=fetched.modseq,
        )
        for fetched in batch
    ]


class FolderSync:
    """One pass over one folder: everything new since the cursor."""

    def __init__(
        self,
        db: Database,
        client: ImapClient,
        mailbox: MailboxIdentity,
        folder: str,
        *,
        batch_bytes: int = 16 * 2**20,
        batch_messages: int = 250,
    ) -> None:
        self.db = db
        self.client = client
        self.mailbox = mailbox
        self.folder = folder
        self.batch_bytes = batch_bytes
        self.batch_messages = batch_messages

    def _load_cursor(self, uidvalidity: int) -> tuple[int, bool, int | None]:
        with self.db.write() as session:
            cursor = cursors.get(session, self.mailbox.name, self.folder)
            if cursor.uidvalidity is not None and cursor.uidvalidity != uidvalidity:
                old = cursors.reset(session, cursor, uidvalidity)
                return 0, True, old
            return cursor.last_uid, False, None

    def _store(self, items: list[IncomingMessage], uidvalidity: int, modseq: int | None) -> IngestStats:
        with self.db.write() as session:
            stats = ingest(
                session,
                items,
                mailbox=self.mailbox.name,
                folder=self.folder,
                owner_id=self.mailbox.owner_id,
                team_addresses=self.mailbox.team_addresses,
                policy=self.mailbox.policy,
                uidvalidity=uidvalidity,
            )
            cursor = cursors.get(session, self.mailbox.name, self.folder)
            cursors.advance(
                session,
                cursor,
                uidvalidity=uidvalidity,
                last_uid=max(item.uid or 0 for item in items),
                highestmodseq=modseq,
                added=stats.new_messages,
            )
        return stats

    async def run(self, progress: Progress | None = None) -> FolderResult:
        status = await self.client.select(self.folder)
        last_uid, changed, old = await asyncio.to_thread(self._load_cursor, status.uidvalidity)
        if changed:
            log.warning(
                "UIDVALIDITY of %s changed from %s to %s: resyncing the folder",
                self.folder,
                old,
                status.uidvalidity,
                extra={"action": "uidvalidity_changed", "mailbox": self.mailbox.name,
                       "folder": self.folder, "old": old, "new": status.uidvalidity},
            )  # fmt: skip
        result = FolderResult(self.folder, status.uidvalidity, uidvalidity_changed=changed)
        uids = await self.client.uids_from(last_uid + 1)
        if not uids:
            if status.highestmodseq is not None:
                await asyncio.to_thread(self._touch, status.uidvalidity, last_uid, status.highestmodseq)
            return result
        total = len(uids)
        queue: asyncio.Queue[list[FetchedMessage] | None] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            for start in range(0, len(uids), self.batch_messages):
                chunk = uids[start : start + self.batch_messages]
                async for batch in self.client.fetch(
                    chunk, max_bytes=self.batch_bytes, max_count=self.batch_messages
                ):
                    await queue.put(batch)
            await queue.put(None)

        producer = asyncio.create_task(produce(), name=f"fetch {self.mailbox.name}/{self.folder}")
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    batch = getter.result()
                else:
                    error = producer.exception()
                    if error is not None:
                        getter.cancel()
                        raise error
                    batch = await getter  # the producer finished: its sentinel is queued
                if batch is None:
                    break
                if not batch:
                    continue
                items = await asyncio.to_thread(_prepare, batch)
                stats = await asyncio.to_thread(self._store, items, status.uidvalidity, status.highestmodseq)
                result.fetched += len(batch)
                result.stats.add(stats)
                if progress is not None:
                    progress(self.folder, result.fetched, total)
            await producer
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
        log.info(
            "synced %s new messages from %s",
            result.stats.new_messages,
            self.folder,
            extra={"action": "folder_synced", "mailbox": self.mailbox.name, "folder": self.folder,
                   "fetched": result.fetched, "leads": result.stats.leads},
        )  # fmt: skip
        return result

    def _touch(self, uidvalidity: int, last_uid: int, modseq: int) -> None:
        with self.db.write() as session:
            cursor = cursors.get(session, self.mailbox.name, self.folder)
            cursors.advance(
                session, cursor, uidvalidity=uidvalidity, last_uid=last_uid, highestmodseq=modseq, added=0
            )
