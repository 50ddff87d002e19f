"""An IMAP connection for mailbox sync: connect, log in, list, select, search, fetch, wait, append.

`ImapClient` is the one object callers use. It owns a `Connection` (state, the command
lock, the watchdog and "connection lost" guards, close) and hands each command to the
module of its concept, as a plain function taking that connection:

* `login`: TCP/TLS/STARTTLS, LOGIN or AUTHENTICATE, CAPABILITY, ENABLE QRESYNC;
* `folders`: LIST and SELECT/EXAMINE;
* `fetching`: UID SEARCH and batched UID FETCH of bodies;
* `changes`: CONDSTORE/QRESYNC flag changes and expunges since a MODSEQ;
* `append`: APPEND;
* `idle`: IDLE (or NOOP polling) until the server announces a change, by a `Waiter`
  that keeps the renewal timings and the IDLE a cancelled wait left behind.

One command runs at a time per client (the connection's lock); `wait_for_changes` holds
the connection for its whole duration, so appends belong on another connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from mailcrm.imap import append, changes, fetching, folders, login
from mailcrm.imap.connection import Connection
from mailcrm.imap.idle import DEFAULT_IDLE_RENEW, DEFAULT_POLL_INTERVAL, Waiter
from mailcrm.imap.params import ImapParams
from mailcrm.imap.parse import (
    FetchedMessage,
    FlagUpdate,
    FolderChanges,
    FolderInfo,
    FolderStatus,
    MailboxEvents,
)
from mailcrm.oauth import TokenProvider

__all__ = ["ImapClient", "ImapParams", "TokenProvider"]


class ImapClient:
    """A logged-in IMAP connection; create it with `ImapClient.connect`.

    ``connection`` is the `Connection` it owns (its state is what the commands share);
    callers need only the methods below.
    """

    def __init__(
        self,
        account: ImapParams,
        *,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        """A client not yet connected (`connect` makes one that is); ``idle_renew`` and
        ``poll_interval`` are checked first, before anything is opened."""
        Waiter.check_timings(idle_renew, poll_interval)
        self.connection = Connection(account)
        self._waiter = Waiter(self.connection, idle_renew=idle_renew, poll_interval=poll_interval)

    @classmethod
    async def connect(
        cls,
        account: ImapParams,
        *,
        token_provider: TokenProvider | None = None,
        connect_timeout: float = 30.0,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Self:
        """Connect (TLS per ``account.security``), log in (per ``account.auth``) and read
        the capabilities. ``connect_timeout`` bounds TCP, TLS, greeting and STARTTLS."""
        client = cls(account, idle_renew=idle_renew, poll_interval=poll_interval)
        await login.log_in(client.connection, token_provider, connect_timeout)
        return client

    # -- what the connection knows ---------------------------------------------------------

    @property
    def account(self) -> ImapParams:
        return self.connection.account

    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def port(self) -> int:
        return self.connection.port

    @property
    def capabilities(self) -> frozenset[str]:
        return self.connection.capabilities

    @property
    def has_idle(self) -> bool:
        return self.connection.has_idle

    @property
    def has_condstore(self) -> bool:
        return self.connection.has_condstore

    @property
    def has_qresync(self) -> bool:
        return self.connection.has_qresync

    @property
    def qresync_enabled(self) -> bool:
        """QRESYNC is on for this connection: `changes_since` reports expunges too."""
        return self.connection.qresync_enabled

    @property
    def has_uidplus(self) -> bool:
        return self.connection.has_uidplus

    @property
    def bytes_received(self) -> int:
        """Bytes read from the server so far (progress and metrics)."""
        return self.connection.bytes_received

    @property
    def selected(self) -> str | None:
        """The folder the last successful `select` opened."""
        return self.connection.selected

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """LOGOUT (bounded by a short timeout), then drop the connection. Idempotent."""
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- commands ------------------------------------------------------------------------

    async def list_folders(self) -> list[FolderInfo]:
        """All folders with their attributes (special-use roles included where offered)."""
        return await folders.list_folders(self.connection)

    async def sent_folder(self) -> str | None:
        """The Sent folder by RFC 6154 ``\\Sent``, else by a well-known name; None if absent."""
        return await folders.sent_folder(self.connection)

    async def select(self, folder: str, *, readonly: bool = True) -> FolderStatus:
        """Open ``folder`` (EXAMINE when ``readonly``), enabling CONDSTORE when offered."""
        return await folders.select(self.connection, folder, readonly=readonly)

    async def uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= ``first_uid`` in the selected folder, ascending."""
        return await fetching.uids_from(self.connection, first_uid)

    async def uids_upto(self, last_uid: int) -> list[int]:
        """UIDs <= ``last_uid`` still in the selected folder, ascending."""
        return await fetching.uids_upto(self.connection, last_uid)

    def fetch(
        self,
        uids: Sequence[int],
        *,
        max_bytes: int = 16 * 2**20,
        max_count: int = fetching.DEFAULT_BATCH_COUNT,
    ) -> AsyncIterator[list[FetchedMessage]]:
        """Messages of the selected folder in UID order, in batches of at most ``max_count``
        messages and ``max_bytes`` bytes (`fetching.fetch`)."""
        return fetching.fetch(self.connection, uids, max_bytes=max_bytes, max_count=max_count)

    async def flag_changes(self, since_modseq: int) -> list[FlagUpdate]:
        """Flags of messages whose MODSEQ is above ``since_modseq`` (needs CONDSTORE)."""
        return await changes.flag_changes(self.connection, since_modseq)

    async def changes_since(self, since_modseq: int, last_uid: int) -> FolderChanges:
        """Flag changes of UIDs 1..``last_uid`` above ``since_modseq``, plus the UIDs expunged
        since then when QRESYNC is enabled (`changes.changes_since`)."""
        return await changes.changes_since(self.connection, since_modseq, last_uid)

    async def append(self, folder: str, raw: bytes, flags: Sequence[str] = ("\\Seen",)) -> int | None:
        """Store ``raw`` in ``folder``; the new UID when the server reports APPENDUID (UIDPLUS)."""
        return await append.append(self.connection, folder, raw, flags)

    async def wait_for_changes(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the server to announce a change in the selected
        folder (IDLE, else NOOP polling); False when nothing happened."""
        return await self._waiter.wait_for_changes(timeout)

    async def wait_for_events(self, timeout: float) -> MailboxEvents:  # noqa: ASYNC109
        """`wait_for_changes`, telling what the server announced."""
        return await self._waiter.wait_for_events(timeout)
