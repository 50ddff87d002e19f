"""An IMAP connection for mailbox sync: connect, log in, list, select, search, fetch, wait, append.

Built on aioimaplib's protocol class, with guards the sync needs:

* every command races a "connection lost" future and an inactivity watchdog, because a
  dropped connection does not fail aioimaplib's pending command (it only times out) and
  IDLE can hang forever when the server says BYE (aioimaplib issue #110);
* after a timeout, a lost connection or a cancelled command the client is unusable
  (the protocol state is unknown) and every later call raises `ImapConnectionError`:
  the caller reconnects;
* secrets never become command arguments (LOGIN sends the password as a literal, SASL
  sends its response after the continuation), so they cannot leak into aioimaplib's
  debug log or exception texts.

One command runs at a time per client (an internal lock); `wait_for_changes` holds the
connection for its whole duration, so appends belong on another connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aioimaplib.aioimaplib import (
    AUTH,
    NONAUTH,
    SELECTED,
    AioImapException,
    Command,
    IdleCommand,
)

from mailcrm.imap.errors import (
    ImapAuthError,
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    ImapTimeout,
)
from mailcrm.imap.parse import (
    FetchedMessage,
    FlagUpdate,
    FolderChanges,
    FolderInfo,
    FolderStatus,
    Line,
    choose_sent_folder,
    fetched_messages,
    fetched_sizes,
    flag_updates,
    mailbox_arg,
    parse_appenduid,
    parse_capabilities,
    parse_list,
    parse_search,
    parse_select,
    quote,
    response_code,
    scan_events,
    uid_set_text,
    vanished_uids,
)
from mailcrm.imap.protocol import _ChallengeCommand, _FetchCommand, _Protocol
from mailcrm.settings import ImapAccount

__all__ = ["ImapClient", "TokenProvider"]

log = logging.getLogger(__name__)

TokenProvider = Callable[[ImapAccount], Awaitable[str]]
"""Returns a fresh OAuth2 access token for the account (XOAUTH2)."""

DEFAULT_IDLE_RENEW = 600.0
# Servers may drop an IDLE that lasts 30 minutes (RFC 2177); renew well before.
MAX_IDLE_RENEW = 29 * 60.0
DEFAULT_POLL_INTERVAL = 30.0
LOGOUT_TIMEOUT = 5.0
DEFAULT_BATCH_COUNT = 200
# UIDs per RFC822.SIZE query: keeps each response to a few hundred short lines.
SIZE_QUERY_CHUNK = 500
# Slowest upload rate an APPEND is allowed before its watchdog fires (bytes per second).
APPEND_MIN_RATE = 32 * 1024
_MASK = "********"
_FLAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789$_.-+/:!#&'^`|~")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Reply:
    result: str
    lines: list[Line]
    text: str


# -- the client ----------------------------------------------------------------------------


class ImapClient:
    """A logged-in IMAP connection; create it with `ImapClient.connect`."""

    capabilities: frozenset[str]

    def __init__(
        self,
        account: ImapAccount,
        *,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not 0 < idle_renew <= MAX_IDLE_RENEW:
            raise ValueError(f"idle_renew must be in (0, {MAX_IDLE_RENEW:g}] seconds")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.account = account
        self.host = account.host
        self.port = account.effective_port
        self.capabilities = frozenset()
        self._timeout = account.timeout_seconds
        self._idle_renew = idle_renew
        self._poll_interval = poll_interval
        self._loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[Exception | None] = self._loop.create_future()
        self._protocol = _Protocol(self._loop, self._connection_lost)
        self._lock = asyncio.Lock()
        self._secrets: list[str] = []
        self._broken: str | None = None
        self._closed = False
        self._selected: str | None = None
        self._condstore_enabled = False
        self._qresync_enabled = False
        self._background: set[asyncio.Future[Any]] = set()
        self._idle_ending: asyncio.Future[Any] | None = None

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        account: ImapAccount,
        *,
        token_provider: TokenProvider | None = None,
        connect_timeout: float = 30.0,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> ImapClient:
        """Connect (TLS per ``account.security``), log in (per ``account.auth``) and read
        the capabilities. ``connect_timeout`` bounds TCP, TLS, greeting and STARTTLS."""
        client = cls(account, idle_renew=idle_renew, poll_interval=poll_interval)
        secret = await client._obtain_secret(token_provider)
        try:
            await client._open(connect_timeout)
            await client._authenticate(secret)
            await client._load_capabilities()
            await client._enable_qresync()
        except BaseException:
            client._drop("connect failed")
            raise
        log.info(
            "IMAP connected to %s:%s as %s",
            client.host,
            client.port,
            account.username,
            extra={"action": "imap_connected", "host": client.host, "user": account.username},
        )
        return client

    async def _obtain_secret(self, token_provider: TokenProvider | None) -> str:
        account = self.account
        if account.auth == "xoauth2":
            if token_provider is None:
                raise ImapAuthError(
                    f"IMAP account {account.username} on {self.host} uses XOAUTH2 "
                    "but no token provider is configured",
                    hint="set `auth: login` or `auth: plain`, or start mailcrm with an OAuth token provider",
                )
            try:
                token = await token_provider(account)
            except ImapError:
                raise
            except Exception as exc:
                raise ImapAuthError(
                    f"cannot get an OAuth2 token for {account.username} on {self.host}: {type(exc).__name__}"
                ) from exc
            self._secrets.append(token)
            return token
        password = account.resolve(f"{account.username} imap")
        self._secrets.append(password)
        return password

    def _ssl_context(self) -> ssl.SSLContext:
        ca_file = self.account.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ImapConnectionError(
                f"cannot load ca_file {ca_file} for IMAP server {self.host}:{self.port}: "
                f"{getattr(exc, 'strerror', None) or exc}",
                hint="`ca_file` must name a readable PEM file with the CA certificate(s)",
            ) from None

    async def _open(self, connect_timeout: float) -> None:
        security = self.account.security
        context = self._ssl_context() if security != "plain" else None
        try:
            async with asyncio.timeout(connect_timeout):
                transport, _ = await self._loop.create_connection(
                    lambda: self._protocol,
                    self.host,
                    self.port,
                    ssl=context if security == "tls" else None,
                    ssl_handshake_timeout=connect_timeout if security == "tls" else None,
                )
                _keepalive(transport)
                await self._race(self._protocol.wait(f"{AUTH}|{NONAUTH}"), "greeting")
                if security == "starttls":
                    assert context is not None
                    await self._starttls(context, connect_timeout)
        except TimeoutError:
            raise ImapTimeout(
                f"no IMAP greeting from {self.host}:{self.port} within {connect_timeout:g} s",
                hint="check `host`, `port` and `security` (tls usually on 993, starttls on 143)",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise self._certificate_error(exc) from None
        except ssl.SSLError as exc:
            raise ImapConnectionError(
                f"TLS handshake with IMAP server {self.host}:{self.port} failed: {exc.reason or exc}",
                hint="check `security`: tls (implicit, usually port 993) or starttls (usually 143)",
            ) from None
        except OSError as exc:
            raise ImapConnectionError(
                f"cannot connect to IMAP server {self.host}:{self.port}: {_os_reason(exc)}"
            ) from None

    def _certificate_error(self, exc: ssl.SSLCertVerificationError) -> ImapConnectionError:
        reason = exc.verify_message or exc.reason or str(exc)
        if "mismatch" in str(reason).lower():
            hint = "connect using a host name the server certificate is issued for"
        elif self.account.ca_file:
            hint = f"the certificate is not signed by the CA in ca_file {self.account.ca_file}"
        else:
            hint = "if the server uses a private CA, set `ca_file:` to that CA certificate (PEM)"
        return ImapConnectionError(
            f"TLS certificate of IMAP server {self.host}:{self.port} rejected: "
            f"certificate verify failed: {reason}",
            hint=hint,
        )

    async def _starttls(self, context: ssl.SSLContext, connect_timeout: float) -> None:
        caps = frozenset(cap.upper() for cap in self._protocol.capabilities)
        if "STARTTLS" not in caps:
            raise ImapConnectionError(
                f"IMAP server {self.host}:{self.port} does not offer STARTTLS",
                hint="use `security: tls` (usually port 993); mailcrm never falls back to plain text",
            )
        reply = await self._execute("STARTTLS", lambda: Command("STARTTLS", self._tag(), loop=self._loop))
        self._expect_ok(reply, "STARTTLS")
        new_transport = await self._loop.start_tls(
            self._protocol.transport,
            self._protocol,
            context,
            server_hostname=self.host,
            ssl_handshake_timeout=connect_timeout,
        )
        self._protocol.transport = new_transport
        # Capabilities seen before TLS may have been tampered with (RFC 8314): read again.
        self._protocol.capabilities = set()

    async def _authenticate(self, secret: str) -> None:
        account = self.account
        if self._protocol.state == AUTH:
            return  # PREAUTH greeting
        caps = await self._load_capabilities()
        user = account.username
        answers: list[bytes]
        args: tuple[str, ...]
        if account.auth == "login":
            if "LOGINDISABLED" in caps:
                raise ImapAuthError(
                    f"IMAP server {self.host} refuses LOGIN for {user} on this connection",
                    hint="use `security: tls` or `starttls`, or `auth: plain`",
                )
            password = secret.encode("utf-8")
            name, args, answers, extra = "LOGIN", (quote(user), f"{{{len(password)}}}"), [password], b"*"
        else:
            mechanism = "PLAIN" if account.auth == "plain" else "XOAUTH2"
            if f"AUTH={mechanism}" not in caps:
                raise ImapAuthError(
                    f"IMAP server {self.host} does not offer AUTHENTICATE {mechanism} for {user}",
                    hint="set `auth:` to a mechanism the server lists (login, plain or xoauth2)",
                )
            if mechanism == "PLAIN":
                response = b"\0" + user.encode() + b"\0" + secret.encode("utf-8")
            else:
                response = f"user={user}\x01auth=Bearer {secret}\x01\x01".encode()
            encoded = base64.b64encode(response)
            self._secrets.append(encoded.decode("ascii"))
            # XOAUTH2 reports failures as a challenge that must be answered with an empty line.
            extra = b"" if mechanism == "XOAUTH2" else b"*"
            name, args, answers = "AUTHENTICATE", (mechanism,), [encoded]
        holder: list[_ChallengeCommand] = []

        def make() -> _ChallengeCommand:
            command = _ChallengeCommand(
                name,
                self._tag(),
                *args,
                loop=self._loop,
                answers=answers,
                respond=self._write,
                extra_answer=extra,
            )
            holder.append(command)
            return command

        reply = await self._execute(name, make)
        if reply.result == "OK":
            self._protocol.state = AUTH
            return
        text = self._masked(reply.text)
        code = response_code(reply.text)
        if reply.result == "NO" and code == "UNAVAILABLE":
            raise ImapConnectionError(
                f"IMAP server {self.host} cannot log in {user} right now: {text}",
            )
        if reply.result != "NO":
            raise ImapProtocolError(
                f"IMAP {name} for {user} on {self.host} failed: {reply.result} {text}",
                command=name,
                server_text=text,
            )
        detail = _oauth_detail(holder[0].challenges) if holder and account.auth == "xoauth2" else ""
        raise ImapAuthError(
            f"IMAP login failed for {user} on {self.host}:{self.port}: {text}{detail}",
            hint="check the username and the password (or token) configured for this account",
        )

    async def _load_capabilities(self) -> frozenset[str]:
        reply = await self._execute("CAPABILITY", lambda: Command("CAPABILITY", self._tag(), loop=self._loop))
        self._expect_ok(reply, "CAPABILITY")
        caps = parse_capabilities(reply.lines)
        self.capabilities = caps
        # aioimaplib checks its own set before IDLE and MOVE.
        self._protocol.capabilities = set(caps)
        return caps

    async def _enable_qresync(self) -> None:
        """ENABLE QRESYNC where offered, so expunges since a known MODSEQ can be asked for
        (``VANISHED``); it must come before any SELECT (RFC 5161)."""
        if not self.has_qresync or "ENABLE" not in self.capabilities:
            return
        reply = await self._execute(
            "ENABLE", lambda: Command("ENABLE", self._tag(), "QRESYNC", loop=self._loop)
        )
        enabled = b" ".join(bytes(line) for line in reply.lines if isinstance(line, bytes)).upper()
        self._qresync_enabled = reply.result == "OK" and b"QRESYNC" in enabled

    # -- capability flags ----------------------------------------------------------------

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    @property
    def has_condstore(self) -> bool:
        return "CONDSTORE" in self.capabilities or "QRESYNC" in self.capabilities

    @property
    def has_qresync(self) -> bool:
        return "QRESYNC" in self.capabilities

    @property
    def qresync_enabled(self) -> bool:
        """QRESYNC is on for this connection: `changes_since` reports expunges too."""
        return self._qresync_enabled

    @property
    def has_uidplus(self) -> bool:
        return "UIDPLUS" in self.capabilities

    @property
    def bytes_received(self) -> int:
        """Bytes read from the server so far (progress and metrics)."""
        return int(self._protocol.bytes_received)

    @property
    def selected(self) -> str | None:
        """The folder the last successful `select` opened."""
        return self._selected

    # -- folders -------------------------------------------------------------------------

    async def list_folders(self) -> list[FolderInfo]:
        """All folders with their attributes (special-use roles included where offered)."""
        args = ['""', '"*"']
        if {"SPECIAL-USE", "LIST-EXTENDED"} <= self.capabilities:
            args += ["RETURN", "(SPECIAL-USE)"]
        reply = await self._run("LIST", lambda: Command("LIST", self._tag(), *args, loop=self._loop))
        return parse_list(reply.lines)

    async def sent_folder(self) -> str | None:
        """The Sent folder by RFC 6154 ``\\Sent``, else by a well-known name; None if absent."""
        return choose_sent_folder(await self.list_folders())

    async def select(self, folder: str, *, readonly: bool = True) -> FolderStatus:
        """Open ``folder`` (EXAMINE when ``readonly``), enabling CONDSTORE when offered."""
        verb = "EXAMINE" if readonly else "SELECT"
        args = [mailbox_arg(folder)]
        if self.has_condstore:
            args.append("(CONDSTORE)")
        async with self._lock:
            self._selected = None
            reply = await self._execute(
                f"{verb} {folder}", lambda: Command(verb, self._tag(), *args, loop=self._loop)
            )
            if reply.result != "OK":
                # A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
                self._protocol.state = AUTH
                self._expect_ok(reply, f"{verb} {folder}")
            status = parse_select(reply.lines)
            self._protocol.state = SELECTED
            self._selected = folder
            self._condstore_enabled = self.has_condstore
        return status

    # -- messages ------------------------------------------------------------------------

    async def uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= ``first_uid`` in the selected folder, ascending.

        ``UID SEARCH UID n:*`` always matches the highest UID, even when it is below n.
        """
        first = max(1, first_uid)
        self._require_selected("UID SEARCH")
        reply = await self._run(
            "UID SEARCH",
            lambda: Command("SEARCH", self._tag(), "UID", f"{first}:*", prefix="UID", loop=self._loop),
        )
        return sorted({uid for uid in parse_search(reply.lines) if uid >= first})

    async def uids_upto(self, last_uid: int) -> list[int]:
        """UIDs <= ``last_uid`` still in the selected folder, ascending (expunge detection
        without QRESYNC). One SEARCH response: the parser handles megabytes of UIDs."""
        if last_uid < 1:
            return []
        self._require_selected("UID SEARCH")
        reply = await self._run(
            "UID SEARCH",
            lambda: Command("SEARCH", self._tag(), "UID", f"1:{last_uid}", prefix="UID", loop=self._loop),
        )
        return sorted({uid for uid in parse_search(reply.lines) if uid <= last_uid})

    async def fetch(
        self,
        uids: Sequence[int],
        *,
        max_bytes: int = 16 * 2**20,
        max_count: int = DEFAULT_BATCH_COUNT,
    ) -> AsyncIterator[list[FetchedMessage]]:
        """Messages of the selected folder in UID order, in batches of at most ``max_count``
        messages and ``max_bytes`` bytes (a bigger message comes alone). ``BODY.PEEK[]``
        keeps ``\\Seen`` untouched; messages expunged meanwhile are skipped."""
        if max_bytes <= 0 or max_count <= 0:
            raise ValueError("max_bytes and max_count must be positive")
        wanted = sorted(set(uids))
        folder = self._require_selected("UID FETCH")
        for start in range(0, len(wanted), SIZE_QUERY_CHUNK):
            chunk = wanted[start : start + SIZE_QUERY_CHUNK]
            sizes = await self._sizes(chunk, folder)
            batch: list[int] = []
            total = 0
            for uid in chunk:
                size = sizes.get(uid)
                if size is None:
                    continue
                if batch and (len(batch) >= max_count or total + size > max_bytes):
                    if messages := await self._bodies(batch, folder):
                        yield messages
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch and (messages := await self._bodies(batch, folder)):
                yield messages

    async def _sizes(self, uids: Sequence[int], folder: str) -> dict[int, int]:
        self._require_folder(folder)
        uid_set = uid_set_text(uids)
        reply = await self._run(
            "UID FETCH (RFC822.SIZE)",
            lambda: _FetchCommand(self._tag(), uid_set, "(UID RFC822.SIZE)", prefix="UID", loop=self._loop),
        )
        return fetched_sizes(reply.lines, uids)

    async def _bodies(self, uids: Sequence[int], folder: str) -> list[FetchedMessage]:
        self._require_folder(folder)
        uid_set = uid_set_text(uids)
        items = "UID RFC822.SIZE INTERNALDATE FLAGS"
        if self._condstore_enabled:
            items += " MODSEQ"
        items = f"({items} BODY.PEEK[])"
        reply = await self._run(
            "UID FETCH (BODY.PEEK[])",
            lambda: _FetchCommand(self._tag(), uid_set, items, prefix="UID", loop=self._loop),
        )
        return fetched_messages(reply.lines, uids)

    async def flag_changes(self, since_modseq: int) -> list[FlagUpdate]:
        """Flags of messages whose MODSEQ is above ``since_modseq`` (needs CONDSTORE)."""
        if not self.has_condstore:
            raise ImapProtocolError(
                f"IMAP server {self.host} does not support CONDSTORE (CHANGEDSINCE)",
                command="UID FETCH",
            )
        self._require_selected("UID FETCH")
        changed = f"(CHANGEDSINCE {int(since_modseq)})"
        reply = await self._run(
            "UID FETCH (CHANGEDSINCE)",
            lambda: _FetchCommand(self._tag(), "1:*", "(UID FLAGS)", changed, prefix="UID", loop=self._loop),
        )
        self._condstore_enabled = True
        return flag_updates(reply.lines)

    async def changes_since(self, since_modseq: int, last_uid: int) -> FolderChanges:
        """Flag changes of UIDs 1..``last_uid`` above ``since_modseq`` in one round trip
        (``UID FETCH ... (FLAGS) (CHANGEDSINCE n)``), plus the UIDs expunged since then
        (``VANISHED``) when QRESYNC is enabled. Needs CONDSTORE."""
        if not self.has_condstore:
            raise ImapProtocolError(
                f"IMAP server {self.host} does not support CONDSTORE (CHANGEDSINCE)",
                command="UID FETCH",
            )
        if last_uid < 1:
            return FolderChanges([], [] if self._qresync_enabled else None)
        self._require_selected("UID FETCH")
        modifiers = f"(CHANGEDSINCE {int(since_modseq)}{' VANISHED' if self._qresync_enabled else ''})"
        reply = await self._run(
            "UID FETCH (CHANGEDSINCE)",
            lambda: _FetchCommand(
                self._tag(), f"1:{last_uid}", "(UID FLAGS)", modifiers, prefix="UID", loop=self._loop
            ),
        )
        updates = [update for update in flag_updates(reply.lines) if update.uid <= last_uid]
        return FolderChanges(updates, vanished_uids(reply.lines) if self._qresync_enabled else None)

    async def append(self, folder: str, raw: bytes, flags: Sequence[str] = ("\\Seen",)) -> int | None:
        """Store ``raw`` in ``folder``; the new UID when the server reports APPENDUID (UIDPLUS)."""
        for flag in flags:
            if not flag or not set(flag.removeprefix("\\")) <= _FLAG_CHARS:
                raise ValueError(f"invalid IMAP flag {flag!r}")
        flag_list = f"({' '.join(flags)})" if flags else None
        bound = self._timeout + len(raw) / APPEND_MIN_RATE
        reply = await self._run(
            f"APPEND {folder}",
            lambda: self._protocol.append(bytes(raw), mailbox=mailbox_arg(folder), flags=flag_list),
            limit=bound,
            expect_ok=False,
        )
        if reply.result != "OK":
            hint = None
            if response_code(reply.text) == "TRYCREATE":
                hint = f"the folder {folder!r} does not exist on {self.host}"
            self._expect_ok(reply, f"APPEND {folder}", hint=hint)
        appended = parse_appenduid(reply.text)
        return appended[1] if appended else None

    # -- waiting for changes -------------------------------------------------------------

    async def wait_for_changes(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the server to announce new, removed or changed
        messages in the selected folder: IDLE (renewed every ``idle_renew`` seconds) when
        offered, else NOOP every ``poll_interval`` seconds. False when nothing happened."""
        self._require_selected("IDLE" if self.has_idle else "NOOP")
        deadline = self._loop.time() + max(0.0, timeout)
        async with self._lock:
            self._check_usable("IDLE")
            if not self.has_idle:
                return await self._poll(deadline)
            while (remaining := deadline - self._loop.time()) > 0:
                if await self._idle_once(min(remaining, self._idle_renew)):
                    return True
            return False

    async def _poll(self, deadline: float) -> bool:
        while True:
            reply = await self._execute("NOOP", lambda: Command("NOOP", self._tag(), loop=self._loop))
            self._expect_ok(reply, "NOOP")
            events = scan_events([reply.lines])
            if events.bye:
                raise self._fail(self._lost_error("NOOP", f"server said BYE {events.bye}"))
            if events.changed:
                return True
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            await self._race(asyncio.sleep(min(remaining, self._poll_interval)), "NOOP polling")

    async def _idle_once(self, window: float) -> bool:
        """One IDLE command: start, wait up to ``window`` for a push, DONE."""
        protocol = self._protocol
        if self._idle_ending is not None and not self._idle_ending.done():
            # A cancelled wait left IDLE finishing in the background; let it end first.
            await self._guard(self._idle_ending, "IDLE DONE", self._timeout)
        queue: asyncio.Queue[list[Line]] = protocol.idle_queue
        _drain(queue)
        command = IdleCommand(self._tag(), queue, loop=self._loop)
        idle = asyncio.ensure_future(protocol.execute(command))
        acknowledged = False
        log.debug("IMAP IDLE started on %s (%s)", self.host, self._selected, extra={"action": "imap_idle"})
        try:
            ack = asyncio.ensure_future(protocol.wait_for_idle_response())
            try:
                await self._guard(_first_of(ack, idle), "IDLE", self._timeout)
            finally:
                ack.cancel()
            if idle.done():
                response = idle.result()
                raise ImapProtocolError(
                    f"IMAP IDLE refused by {self.host}: {response.result} {_last_text(response.lines)}",
                    command="IDLE",
                )
            acknowledged = True
            changed = await self._idle_listen(queue, idle, window)
            if not idle.done():
                protocol.idle_done()
            await self._guard(idle, "IDLE DONE", self._timeout)
            acknowledged = False
            # Pushes that arrived together with the tagged OK never reach the queue.
            events = scan_events([*_drain(queue), list(command.buffer)])
            if events.bye:
                raise self._fail(self._lost_error("IDLE", f"server said BYE {events.bye}"))
            return changed or events.changed
        except asyncio.CancelledError:
            if acknowledged and not idle.done() and self._broken is None:
                # Leave IDLE cleanly so close() can still LOGOUT; the OK arrives in the background.
                protocol.idle_done()
                self._keep(idle)
                self._idle_ending = idle
            else:
                idle.cancel()
                self._drop("IDLE cancelled")
            raise
        except AioImapException as exc:
            idle.cancel()
            raise self._fail(ImapProtocolError(f"IMAP IDLE on {self.host}: {exc}", command="IDLE")) from None
        except BaseException:
            idle.cancel()
            raise

    async def _idle_listen(
        self, queue: asyncio.Queue[list[Line]], idle: asyncio.Future[Any], window: float
    ) -> bool:
        end = self._loop.time() + window
        while (remaining := end - self._loop.time()) > 0:
            getter = asyncio.ensure_future(queue.get())
            try:
                waiters: set[asyncio.Future[Any]] = {getter, idle, self._lost}
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                events = scan_events([getter.result()])
                if events.bye:
                    raise self._fail(self._lost_error("IDLE", f"server said BYE {events.bye}"))
                if events.changed:
                    log.debug(
                        "IMAP IDLE push on %s: %s", self.host, events, extra={"action": "imap_idle_push"}
                    )
                    return True
            if self._lost.done():
                raise self._fail(self._lost_error("IDLE"))
            if idle.done():
                return False  # the server ended IDLE itself; the caller starts a new one
        return False

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """LOGOUT (bounded by a short timeout), then drop the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            # With a command in flight in another task there is no clean point for LOGOUT.
            if self._broken is None and not self._lost.done() and not self._lock.locked():
                with contextlib.suppress(ImapError, AioImapException, TimeoutError):
                    async with asyncio.timeout(min(LOGOUT_TIMEOUT, self._timeout)):
                        await self._race(
                            self._protocol.execute(Command("LOGOUT", self._tag(), loop=self._loop)), "LOGOUT"
                        )
        finally:
            self._drop("closed")

    async def __aenter__(self) -> ImapClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------

    def _tag(self) -> str:
        return str(self._protocol.new_tag())

    def _write(self, data: bytes) -> None:
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, _MASK)
        return text

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(exc)

    def _check_usable(self, what: str) -> None:
        if self._closed:
            raise ImapConnectionError(f"IMAP {what}: the connection to {self.host}:{self.port} is closed")
        if self._broken is not None:
            raise ImapConnectionError(
                f"IMAP {what}: the connection to {self.host}:{self.port} is unusable "
                f"({self._broken}); reconnect"
            )
        if self._lost.done():
            raise self._fail(self._lost_error(what))

    def _require_selected(self, what: str) -> str:
        self._check_usable(what)
        if self._selected is None:
            raise ImapProtocolError(f"IMAP {what} needs a selected folder; call select() first", command=what)
        return self._selected

    def _require_folder(self, folder: str) -> None:
        if self._selected != folder:
            raise ImapProtocolError(
                f"folder {folder!r} was deselected while fetching (now {self._selected!r}); "
                "UIDs only make sense in their folder",
                command="UID FETCH",
            )

    def _lost_error(self, what: str, reason: str | None = None) -> ImapConnectionError:
        if reason is None:
            exc = self._lost.result() if self._lost.done() else None
            if exc is None:
                reason = "connection closed by the server"
            else:
                reason = f"connection lost: {_os_reason(exc) if isinstance(exc, OSError) else exc}"
            if self._protocol.bye:
                reason += f" (server said BYE {self._protocol.bye})"
            elif self._protocol.greeting_error:
                reason += f" (bad greeting: {self._protocol.greeting_error})"
        return ImapConnectionError(f"IMAP {what} on {self.host}:{self.port} failed: {self._masked(reason)}")

    def _fail(self, error: ImapError) -> ImapError:
        """Drop the connection because of ``error`` and return it for raising."""
        self._drop(error.message)
        return error

    def _drop(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            if reason == "closed":
                transport.close()
            else:
                transport.abort()
        for task in list(self._protocol.tasks) + list(self._background):
            task.cancel()

    def _keep(self, future: asyncio.Future[Any]) -> None:
        self._background.add(future)
        future.add_done_callback(self._background.discard)
        # A late exception (connection lost) must not be reported as never retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _race(self, awaitable: Awaitable[_T], what: str) -> _T:
        """Await ``awaitable`` unless the connection is lost first."""
        future = asyncio.ensure_future(awaitable)
        try:
            waiters: set[asyncio.Future[Any]] = {future, self._lost}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not future.done():
                future.cancel()
        if future.done() and not future.cancelled():
            return future.result()
        raise self._fail(self._lost_error(what))

    async def _guard(self, awaitable: Awaitable[_T], what: str, limit: float) -> _T:
        """Await ``awaitable`` racing the connection-lost future and a watchdog that fires after
        ``limit`` seconds without any byte from the server (a big FETCH that keeps streaming
        is not cut off). A timeout or a cancellation leaves the protocol state unknown, so the
        connection is dropped."""
        future = asyncio.ensure_future(awaitable)
        waiters: set[asyncio.Future[Any]] = {future, self._lost}
        started = self._loop.time()
        try:
            while not future.done():
                quiet_since = max(started, self._protocol.last_activity)
                remaining = quiet_since + limit - self._loop.time()
                if remaining <= 0:
                    raise self._fail(
                        ImapTimeout(
                            f"IMAP {what} on {self.host}:{self.port}: no response for {limit:g} s; "
                            "connection dropped",
                            hint="raise `timeout_seconds` for slow servers",
                        )
                    )
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if self._lost.done() and not future.done():
                    raise self._fail(self._lost_error(what))
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
                self._drop(f"{what} cancelled")
            raise
        finally:
            if not future.done():
                future.cancel()
        return future.result()

    async def _execute(self, what: str, make: Callable[[], Any], *, limit: float | None = None) -> _Reply:
        """Run one aioimaplib command (built by ``make``) under the watchdog; lock held by caller."""
        self._check_usable(what)
        command = make()
        if isinstance(command, Command):
            awaitable: Awaitable[Any] = self._protocol.execute(command)
        else:
            awaitable = command
        try:
            response = await self._guard(awaitable, what, self._timeout if limit is None else limit)
        except AioImapException as exc:
            raise ImapProtocolError(
                f"IMAP {what} on {self.host}: {self._masked(str(exc))}", command=what
            ) from None
        lines = list(response.lines)
        last = lines.pop() if lines else b""
        text = bytes(last).decode("utf-8", "replace")
        return _Reply(str(response.result), lines, text)

    async def _run(
        self,
        what: str,
        make: Callable[[], Any],
        *,
        limit: float | None = None,
        expect_ok: bool = True,
    ) -> _Reply:
        async with self._lock:
            reply = await self._execute(what, make, limit=limit)
        if expect_ok:
            self._expect_ok(reply, what)
        return reply

    def _expect_ok(self, reply: _Reply, what: str, *, hint: str | None = None) -> None:
        if reply.result == "OK":
            return
        text = self._masked(reply.text)
        raise ImapProtocolError(
            f"IMAP {what} failed on {self.host}: {reply.result} {text}".rstrip(),
            command=what.split(" ")[0],
            server_text=text,
            hint=hint,
        )


# -- helpers -------------------------------------------------------------------------------


async def _first_of(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(set(futures), return_when=asyncio.FIRST_COMPLETED)


def _drain(queue: asyncio.Queue[list[Line]]) -> list[list[Line]]:
    items: list[list[Line]] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _last_text(lines: Sequence[Any]) -> str:
    return bytes(lines[-1]).decode("utf-8", "replace") if lines else ""


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _oauth_detail(challenges: Sequence[bytes]) -> str:
    """The status of an XOAUTH2 error challenge (base64 JSON), for the error message."""
    for challenge in challenges:
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(challenge, validate=True).decode("utf-8", "replace")
            if decoded:
                return f" (server detail: {decoded})"
    return ""


def _keepalive(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive, so a silently dead peer is noticed even between IDLE renewals."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
