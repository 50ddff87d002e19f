"""Syncing one IMAP folder into the store, incrementally and resumably.

    select folder ──> UIDVALIDITY same as cursor? ──no──> reset cursor (log old/new)
         │                     │ yes                            │
         └─────────────────────┴──── UID SEARCH UID last+1:* <──┘
                                          │
      fetch batches ──queue(1)──> parse + classify ──queue(1)──> ingest + advance cursor
      (BODY.PEEK[], bounded       (pure; two batches at once;   ── ONE transaction ──
       by count and bytes)         a worker process for big      (in a worker thread)
                                   syncs, else threads)

Invariants:
- The cursor (last UID) moves only in the transaction that stored the batch it
  covers: a crash loses no message, and replays at most the batch in flight, which
  the store ignores (one message per Message-ID).
- A UIDVALIDITY change voids every UID: the folder is read again from the start;
  Message-ID (or a stable header hash when it is missing) keeps it from doubling.
  The old locations are marked expunged, never deleted, so the timeline keeps them.
- Known messages are never fetched again. With CONDSTORE and a stored HIGHESTMODSEQ,
  one `UID FETCH 1:last (FLAGS) (CHANGEDSINCE m [VANISHED])` brings the flag changes
  (and, with QRESYNC, the expunges); without QRESYNC expunges are found by comparing
  counts, then UIDs only when the counts differ. The new HIGHESTMODSEQ is stored in
  the transaction that applied those changes, never before (RFC 7162 erratum 1810).
- A pass may skip the flag changes (`run(check_flags=False)`, after an IDLE push that
  announced only new mail): it then keeps the stored HIGHESTMODSEQ as it was, so the
  next pass that does check asks for every change since then and none is lost.
- Fetching uses BODY.PEEK[], so syncing never marks mail as read.
- The three stages run at once, on different batches, joined by queues of one batch:
  at most five batches are in memory (two fetched, two being parsed, one being
  stored), so memory does not grow with the mailbox.
- Database work runs in a worker thread and holds its transaction only while writing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TypeVar

from mailcrm.domain.classify import Classification
from mailcrm.domain.matching import DEFAULT_POLICY, MatchPolicy, read_batch
from mailcrm.domain.messages import ParsedMessage
from mailcrm.imap.client import ImapClient
from mailcrm.imap.parse import FetchedMessage, FlagUpdate, FolderStatus
from mailcrm.store import cursors, mail, outbox
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
    flags_changed: int = 0
    expunged: int = 0
    flags_checked: bool = True  # False: a CHANGEDSINCE was due but skipped (HIGHESTMODSEQ kept)


@dataclass(frozen=True)
class _Start:
    """The cursor as this pass found it."""

    last_uid: int
    highestmodseq: int | None
    uidvalidity_changed: bool
    old_uidvalidity: int | None


def log_sender_issues(stats: IngestStats, mailbox: str) -> None:
    """One WARNING per sender-side failure seen for the first time (after the commit that recorded it)."""
    for line in stats.sender_issues:
        log.warning("%s", line, extra={"action": "sender_issue", "mailbox": mailbox})


def prepare_raw(raws: Sequence[bytes]) -> list[IncomingMessage]:
    """Parse and classify raw messages from files (CPU work: run it off the event loop)."""
    return [IncomingMessage(parsed, classification) for parsed, classification in read_batch(raws)]


def _incoming(
    batch: Sequence[FetchedMessage], read: Sequence[tuple[ParsedMessage, Classification]]
) -> list[IncomingMessage]:
    return [
        IncomingMessage(parsed, classification, uid=fetched.uid, flags=fetched.flags, modseq=fetched.modseq)
        for fetched, (parsed, classification) in zip(batch, read, strict=True)
    ]


def _prepare(batch: Sequence[FetchedMessage]) -> list[IncomingMessage]:
    """Parse and classify fetched messages in this process."""
    return _incoming(batch, read_batch([fetched.raw for fetched in batch]))


class _Parser:
    """Parses fetched batches: in a worker process for big syncs, so parsing runs on a
    second core while this process fetches and stores (one interpreter cannot run
    both at once); in a thread for small ones (IDLE pushes), where starting a process
    would cost more than it saves. A crashed worker process falls back to threads."""

    def __init__(self, use_process: bool) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if use_process:
            # Not fork: this process has threads (the store's, the executor's).
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                context.set_forkserver_preload([read_batch.__module__])
            # Ctrl-C is this process's to handle (it stops the pool); the worker ignores it.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=signal.signal,
                initargs=(signal.SIGINT, signal.SIG_IGN),
            )

    async def prepare(self, batch: list[FetchedMessage]) -> list[IncomingMessage]:
        if self._pool is not None:
            raws = [fetched.raw for fetched in batch]
            try:
                read = await asyncio.get_running_loop().run_in_executor(self._pool, read_batch, raws)
            except (BrokenProcessPool, OSError) as exc:
                log.warning("parsing process unavailable (%s); parsing in threads from now on", exc)
                self.close(cancel=False)  # other batches already sent fail the same way
            else:
                return _incoming(batch, read)
        return await asyncio.to_thread(_prepare, batch)

    def close(self, *, cancel: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=cancel)
            self._pool = None


_T = TypeVar("_T")


async def _next(queue: asyncio.Queue[_T | None], upstream: asyncio.Task[None]) -> _T | None:
    """The next item of `queue`; raises the upstream task's error if it fails first."""
    getter = asyncio.ensure_future(queue.get())
    done, _ = await asyncio.wait({getter, upstream}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    error = upstream.exception()
    if error is not None:
        getter.cancel()
        raise error
    return await getter  # upstream finished: its sentinel is queued


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
        parse_process_from: int = 1000,
    ) -> None:
        self.db = db
        self.client = client
        self.mailbox = mailbox
        self.folder = folder
        self.batch_bytes = batch_bytes
        self.batch_messages = batch_messages
        self.parse_process_from = parse_process_from  # messages to sync before parsing moves to a process

    def _load_cursor(self, uidvalidity: int) -> _Start:
        with self.db.write() as session:
            cursor = cursors.get(session, self.mailbox.name, self.folder)
            if cursor.uidvalidity is not None and cursor.uidvalidity != uidvalidity:
                old = cursors.reset(session, cursor, uidvalidity)
                mail.expunge_other_validities(session, self.mailbox.name, self.folder, uidvalidity)
                return _Start(0, None, True, old)
            return _Start(cursor.last_uid, cursor.highestmodseq, False, None)

    async def _changes(
        self, status: FolderStatus, start: _Start, new_uids: int, result: FolderResult, check_flags: bool
    ) -> int | None:
        """Flag changes and expunges among the messages already stored (none are fetched again).

        Returns the HIGHESTMODSEQ the cursor may store after this pass: the server's, or
        the stored one when the flag changes were skipped (``check_flags`` False).
        """
        if start.last_uid == 0:
            return status.highestmodseq  # first sync of the folder: nothing stored to change
        known = start.highestmodseq
        condstore = self.client.has_condstore and status.highestmodseq is not None and known is not None
        if condstore and status.highestmodseq == known and self.client.qresync_enabled:
            return status.highestmodseq  # QRESYNC servers raise HIGHESTMODSEQ on any flag change or expunge
        flags: list[FlagUpdate] = []
        vanished: list[tuple[int, int]] | None = None
        covered = status.highestmodseq
        if condstore and status.highestmodseq != known:
            assert known is not None
            if check_flags:
                changes = await self.client.changes_since(known, start.last_uid)
                flags, vanished = changes.flags, changes.vanished
            else:  # skipped: the cursor keeps `known`, expunges are found as without CONDSTORE
                covered, condstore = known, False
                result.flags_checked = False
        if vanished is None:
            vanished = await self._missing(status, start.last_uid, new_uids)
        if not flags and not vanished and (not condstore or status.highestmodseq == known):
            return covered
        changed, expunged = await asyncio.to_thread(
            self._apply_changes, status, flags, vanished, status.highestmodseq if condstore else None
        )
        result.flags_changed, result.expunged = changed, expunged
        if changed or expunged:
            log.info(
                "%s flag changes and %s expunges in %s",
                changed,
                expunged,
                self.folder,
                extra={"action": "folder_changes", "mailbox": self.mailbox.name, "folder": self.folder,
                       "flags_changed": changed, "expunged": expunged},
            )  # fmt: skip
        return covered

    async def _missing(self, status: FolderStatus, last_uid: int, new_uids: int) -> list[tuple[int, int]]:
        """Stored UIDs the server no longer has, without QRESYNC: counts first (no UID list
        unless they differ), then the folder's UIDs compared with the stored ones."""
        name, folder, validity = self.mailbox.name, self.folder, status.uidvalidity

        def count() -> int:
            with self.db.read() as session:
                return mail.live_location_count(session, name, folder, validity, last_uid)

        if await asyncio.to_thread(count) == status.exists - new_uids:
            return []
        present = set(await self.client.uids_upto(last_uid))

        def stored() -> set[int]:
            with self.db.read() as session:
                return mail.live_location_uids(session, name, folder, validity, last_uid)

        return [(uid, uid) for uid in sorted(await asyncio.to_thread(stored) - present)]

    def _apply_changes(
        self,
        status: FolderStatus,
        flags: list[FlagUpdate],
        vanished: list[tuple[int, int]],
        modseq: int | None,
    ) -> tuple[int, int]:
        """Flags, expunges and the HIGHESTMODSEQ that covers them, in one transaction."""
        name, folder, validity = self.mailbox.name, self.folder, status.uidvalidity
        with self.db.write() as session:
            changed = mail.apply_flag_changes(
                session, name, folder, validity, [(u.uid, u.flags, u.modseq) for u in flags]
            )
            expunged = mail.mark_expunged(session, name, folder, validity, vanished)
            if modseq is not None:
                cursor = cursors.get(session, name, folder)
                if cursor.uidvalidity == validity:
                    cursors.set_highestmodseq(session, cursor, modseq)
        return changed, expunged

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
            # A send whose outcome was unknown is confirmed by its copy in the mailbox.
            confirmed = outbox.confirm_from_mailbox(
                session,
                (item.parsed.message_id for item in items if not item.parsed.message_id_synthetic),
                mailbox=self.mailbox.name,
                folder=self.folder,
            )
            stats.confirmed_sends = len(confirmed)
            cursor = cursors.get(session, self.mailbox.name, self.folder)
            cursors.advance(
                session,
                cursor,
                uidvalidity=uidvalidity,
                last_uid=max(item.uid or 0 for item in items),
                highestmodseq=modseq,
                added=stats.new_messages,
            )
        log_sender_issues(stats, self.mailbox.name)
        if confirmed:
            log.info(
                "%s sends of unknown outcome confirmed by %s",
                len(confirmed),
                self.folder,
                extra={"action": "sends_confirmed", "mailbox": self.mailbox.name, "folder": self.folder,
                       "outbox_ids": confirmed},
            )  # fmt: skip
        return stats

    async def run(self, progress: Progress | None = None, *, check_flags: bool = True) -> FolderResult:
        """Sync the folder once; ``check_flags=False`` skips the flag changes of stored
        messages this time (see the module docstring: none is lost)."""
        status = await self.client.select(self.folder)
        start = await asyncio.to_thread(self._load_cursor, status.uidvalidity)
        last_uid = start.last_uid
        if start.uidvalidity_changed:
            log.warning(
                "UIDVALIDITY of %s changed from %s to %s: resyncing the folder",
                self.folder,
                start.old_uidvalidity,
                status.uidvalidity,
                extra={"action": "uidvalidity_changed", "mailbox": self.mailbox.name,
                       "folder": self.folder, "old": start.old_uidvalidity, "new": status.uidvalidity},
            )  # fmt: skip
        result = FolderResult(self.folder, status.uidvalidity, uidvalidity_changed=start.uidvalidity_changed)
        uids = await self.client.uids_from(last_uid + 1)
        modseq = await self._changes(status, start, len(uids), result, check_flags)
        if not uids:
            if modseq is not None:
                await asyncio.to_thread(self._touch, status.uidvalidity, last_uid, modseq)
            return result
        total = len(uids)
        fetched: asyncio.Queue[list[FetchedMessage] | None] = asyncio.Queue(maxsize=1)
        # Batches being parsed, in fetch order: parsing starts as soon as a batch is
        # fetched, not when the store has taken the previous one (one queued, one waiting
        # to be queued), so the parser does not idle while a batch is stored.
        prepared: asyncio.Queue[asyncio.Future[list[IncomingMessage]] | None] = asyncio.Queue(maxsize=1)
        parser = _Parser(total >= self.parse_process_from)

        async def fetch() -> None:
            # One call for all UIDs: the client asks for sizes in big chunks, then
            # fetches bodies in batches of the configured count and bytes.
            async for batch in self.client.fetch(
                uids, max_bytes=self.batch_bytes, max_count=self.batch_messages
            ):
                await fetched.put(batch)
            await fetched.put(None)

        async def parse(upstream: asyncio.Task[None]) -> None:
            while (batch := await _next(fetched, upstream)) is not None:
                if batch:
                    await prepared.put(asyncio.ensure_future(parser.prepare(batch)))
            await prepared.put(None)

        name = f"{self.mailbox.name}/{self.folder}"
        fetcher = asyncio.create_task(fetch(), name=f"fetch {name}")
        parsing = asyncio.create_task(parse(fetcher), name=f"parse {name}")
        try:
            while (parsed := await _next(prepared, parsing)) is not None:
                items = await parsed
                stats = await asyncio.to_thread(self._store, items, status.uidvalidity, modseq)
                result.fetched += len(items)
                result.stats.add(stats)
                if progress is not None:
                    progress(self.folder, result.fetched, total)
            await parsing
            await fetcher
        finally:
            for task in (parsing, fetcher):
                if not task.done():
                    task.cancel()
            await asyncio.gather(parsing, fetcher, return_exceptions=True)
            while not prepared.empty():
                if (pending := prepared.get_nowait()) is not None:
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
            parser.close()
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
