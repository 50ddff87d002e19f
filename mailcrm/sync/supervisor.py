"""Keeping every salesperson's mailbox in sync: one task per mailbox, isolated from the others.

Each task connects, syncs INBOX, Sent and the configured folders, then waits on
INBOX with IDLE (or polls where IDLE is missing) and syncs again when the server
announces mail, or after `sync.poll_seconds` in any case. A push that announces only
new mail (EXISTS, no FETCH/EXPUNGE/VANISHED) syncs INBOX without asking for flag
changes, unless they were last asked for `sync.poll_seconds` ago or more: the engine
then keeps HIGHESTMODSEQ, so the next pass that asks gets every change meanwhile.
Any failure closes the connection and retries with exponential backoff and jitter;
wrong credentials are retried slowly. One broken mailbox never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from mailcrm.domain.backoff import Backoff
from mailcrm.domain.matching import MatchPolicy
from mailcrm.errors import ConfigError, DatabaseError, MailcrmError
from mailcrm.imap.client import ImapClient, TokenProvider
from mailcrm.imap.errors import ImapAuthError, ImapError
from mailcrm.store import cursors
from mailcrm.store.db import Database
from mailcrm.store.salespeople import TeamMember, sync_team
from mailcrm.store.types import utcnow
from mailcrm.sync.engine import FolderResult, FolderSync, MailboxIdentity, Progress
from mailcrm.sync.policy import Mailbox, SyncPolicy

log = logging.getLogger(__name__)

MAILBOX_LEVEL = "*"
"""The cursor "folder" under which connection-level errors are recorded."""

_T = TypeVar("_T")


@dataclass
class MailboxState:
    """Live health of one mailbox task (shown by the daemon's status output)."""

    name: str
    connected: bool = False
    last_sync_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    synced: int = 0


@dataclass
class MailboxWorker:
    """Syncs one salesperson's mailbox."""

    db: Database
    policy: SyncPolicy
    mailbox: Mailbox
    identity: MailboxIdentity
    token_provider: TokenProvider | None = None
    parse_process_from: int = 1000  # new messages in a folder before parsing moves to a worker process
    state: MailboxState = field(init=False)

    def __post_init__(self) -> None:
        self.state = MailboxState(self.mailbox.email)

    async def _folders(self, client: ImapClient) -> list[str]:
        # Sent first: a reply in INBOX then finds the outbound email it answers.
        sent = await client.sent_folder()
        folders = [sent, "INBOX"] if sent and sent != "INBOX" else ["INBOX"]
        for extra in self.mailbox.folders:
            if extra not in folders:
                folders.append(extra)
        return folders

    async def _connect(self) -> ImapClient:
        return await ImapClient.connect(
            self.mailbox.imap,
            token_provider=self.token_provider,
            idle_renew=self.policy.idle_renew_seconds,
            poll_interval=min(self.policy.poll_seconds, 30.0),
        )

    async def _sync_folders(
        self,
        client: ImapClient,
        folders: Sequence[str],
        progress: Progress | None,
        *,
        check_flags: bool = True,
    ) -> list[FolderResult]:
        results = []
        for folder in folders:
            sync = FolderSync(
                self.db,
                client,
                self.identity,
                folder,
                batch_bytes=self.policy.batch_bytes,
                batch_messages=self.policy.batch_messages,
                parse_process_from=self.parse_process_from,
            )
            result = await sync.run(progress, check_flags=check_flags)
            self.state.synced += result.stats.new_messages
            results.append(result)
        self.state.last_sync_at = utcnow()
        return results

    async def sync_once(self, progress: Progress | None = None) -> list[FolderResult]:
        """Connect, sync every folder once, disconnect (`mailcrm sync --once`). A failure
        is recorded for `mailboxes status` (as the daemon does), then raised."""
        try:
            client = await self._connect()
            try:
                results = await self._sync_folders(client, await self._folders(client), progress)
            finally:
                await client.close()
        except (MailcrmError, OSError) as exc:
            await asyncio.to_thread(self._record_error, exc)
            raise
        await asyncio.to_thread(self._clear_error)
        return results

    def _clear_error(self) -> None:
        """A good sync ends the connection-level error shown by `mailboxes status`."""
        try:
            with self.db.write() as session:
                cursors.clear_error(session, self.mailbox.email, MAILBOX_LEVEL)
        except DatabaseError:
            log.exception("cannot clear the error of mailbox %s", self.mailbox.email)

    def _record_error(self, error: BaseException) -> None:
        self.state.connected = False
        self.state.failures += 1
        self.state.last_error = str(error)

        def write() -> None:
            with self.db.write() as session:
                cursors.record_error(session, self.mailbox.email, MAILBOX_LEVEL, str(error))

        try:
            write()
        except DatabaseError:
            log.exception("cannot record the error of mailbox %s", self.mailbox.email)

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until `stop` is set; never raises for IMAP or database trouble."""
        backoff = Backoff(base=1.0, cap=self.policy.reconnect_max_seconds)
        poll_seconds = self.policy.poll_seconds
        clock = asyncio.get_running_loop().time
        attempt = 0
        while not stop.is_set():
            client: ImapClient | None = None
            try:
                client = await self._connect()
                self.state.connected = True
                folders = await self._folders(client)
                flags_checked_at = clock()
                await self._sync_folders(client, folders, None)
                await asyncio.to_thread(self._clear_error)
                attempt = 0
                while not stop.is_set():
                    await client.select("INBOX")
                    events = await _until_stop(client.wait_for_events(poll_seconds), stop)
                    if stop.is_set() or events is None:
                        break
                    # Only new mail announced: its flags come with it; other flag changes
                    # wait for the next pass that asks (HIGHESTMODSEQ is kept until then).
                    check_flags = not events.only_new_mail or clock() - flags_checked_at >= poll_seconds
                    if check_flags:
                        flags_checked_at = clock()
                    await self._sync_folders(
                        client, ["INBOX"] if events.changed else folders, None, check_flags=check_flags
                    )
                return
            except (ImapAuthError, ConfigError) as exc:
                # A refused login, or a secret that cannot be read (variable unset, file
                # missing or empty): a person must act, so one line saying what, and a slow retry.
                delay = self.policy.auth_retry_seconds
                log.error(
                    "%s; retrying in %.0f s",
                    exc,
                    delay,
                    extra={"action": "imap_auth_failed", "mailbox": self.mailbox.email},
                )
                await asyncio.to_thread(self._record_error, exc)
            except (ImapError, DatabaseError, OSError) as exc:
                attempt += 1
                delay = backoff.delay(attempt)
                log.warning(
                    "mailbox %s: %s; reconnecting in %.1f s",
                    self.mailbox.email,
                    exc,
                    delay,
                    extra={"action": "imap_reconnect", "mailbox": self.mailbox.email, "attempt": attempt},
                )
                await asyncio.to_thread(self._record_error, exc)
            except Exception as exc:  # a bug must not silently end this mailbox's sync
                attempt += 1
                delay = backoff.delay(attempt)
                log.exception(
                    "mailbox %s: unexpected error; retrying in %.1f s",
                    self.mailbox.email,
                    delay,
                    extra={"action": "sync_crashed", "mailbox": self.mailbox.email},
                )
                await asyncio.to_thread(self._record_error, exc)
            finally:
                if client is not None:
                    await asyncio.shield(client.close())
            await _sleep_or_stop(delay, stop)


async def _until_stop(work: Coroutine[Any, Any, _T], stop: asyncio.Event) -> _T | None:
    """Run `work` unless `stop` is set first; then cancel it and return None."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    finally:
        stopper.cancel()


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)


def identities(db: Database, team: Sequence[TeamMember], match: MatchPolicy) -> dict[str, MailboxIdentity]:
    """Every team member's mailbox identity, by email (their rows are synced first)."""
    with db.write() as session:
        owner_ids = sync_team(session, team)
    addresses = frozenset(person.email for person in team)
    return {
        person.email: MailboxIdentity(person.email, owner_ids.get(person.email), addresses, match)
        for person in team
    }


def workers(
    db: Database,
    team: Sequence[TeamMember],
    mailboxes: Sequence[Mailbox],
    policy: SyncPolicy,
    only: Sequence[str] = (),
    token_provider: TokenProvider | None = None,
) -> list[MailboxWorker]:
    """One worker per mailbox (optionally only those named by email or salesperson name).

    Every member of ``team`` counts as "us" when matching, mailbox or not; each mailbox's
    owner must be one of them.
    """
    by_email = identities(db, team, policy.match)
    wanted = {name.strip().lower() for name in only}
    return [
        MailboxWorker(db, policy, mailbox, by_email[mailbox.email], token_provider)
        for mailbox in mailboxes
        if not wanted or mailbox.email in wanted or mailbox.name.lower() in wanted
    ]
