"""SMTP connections per account: a small pool of reused aiosmtplib clients.

* Connecting, TLS and AUTH are `login.SmtpLogin`'s (verified TLS, no AUTH in
  the clear except to a loopback relay, `auth:` login/plain/xoauth2).
* Each send records how far it got (`domain.retry.Phase`): DATA's final "." is
  written only after the caller's `before_dot` hook has recorded the attempt, so
  the caller can tell a safe retry (nothing delivered) from an unknown outcome.
* A pooled connection found dead (closed, or idle too long) before MAIL FROM is
  replaced: nothing was sent on it, so that is always safe.
* Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one
  write and their replies are judged in order (`pipelining.ReplyTap`).
* `per_minute` is enforced as an even spacing between transactions of the account
  in this process (`RateLimiter`); `per_day` is counted by the caller from the outbox.

aiosmtplib exceptions never leave these modules: every failure becomes an
`SmtpSendError` (`errors`) carrying an `SmtpOutcome` the pure core can classify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from mailcrm.domain.retry import Phase, SmtpOutcome
from mailcrm.oauth import TokenProvider
from mailcrm.smtp.errors import (
    SendAborted,
    SmtpConfigError,
    SmtpSendError,
    Utf8NotOffered,
    wants_encryption,
)
from mailcrm.smtp.login import SmtpLogin
from mailcrm.smtp.params import SmtpParams
from mailcrm.smtp.pipelining import PipelineBroken, ReplyTap

log = logging.getLogger(__name__)

IDLE_SECONDS = 30.0
QUIT_TIMEOUT = 1.0

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """The server's answer to the final ".": its code and text, kept in the attempt history."""

    code: int
    text: str


def data_block(payload: bytes) -> bytes:
    """The DATA payload as sent: CRLF line endings, dot-stuffed, with the final ".".

    Built messages already have CRLF endings and rarely a leading dot, so three
    counts (C speed) usually prove the regular expressions have nothing to do.
    """
    crlf = payload.count(b"\r\n")
    if payload.count(b"\n") != crlf or payload.count(b"\r") != crlf:
        payload = _LINE_ENDINGS.sub(b"\r\n", payload)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    if payload.startswith(b".") or b"\n." in payload:
        payload = _LEADING_DOT.sub(b"..", payload)
    return payload + b".\r\n"


class RateLimiter:
    """At most `per_minute` transaction starts in any minute, spread evenly (60/N apart)."""

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next free slot; returns how many seconds to wait for it."""
        if not self.interval:
            return 0.0
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now


class SmtpConnection:
    """One client of a pool; runs one transaction at a time."""

    def __init__(self, pool: SmtpPool) -> None:
        self._pool = pool
        self._client: SMTP | None = None
        self._tap: ReplyTap | None = None
        self._last_used = 0.0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def _ready(self) -> tuple[SMTP, bool]:
        """A usable client and whether it is a reused one (it may turn out to be dead)."""
        client = self._client
        idle = time.monotonic() - self._last_used
        if client is not None and client.is_connected and idle < self._pool.idle_seconds:
            return client, True
        self.close()
        self._client = await self._pool.open_client()
        self._tap = ReplyTap.install(self._client)
        return self._client, False

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        payload: bytes,
        *,
        before_dot: Callable[[], Awaitable[bool]],
    ) -> SmtpReply:
        """Run one transaction; returns the server's final reply.

        Raises `SmtpSendError` (with the phase reached) or `SendAborted`.
        """
        pool = self._pool
        phase = Phase.CONNECT
        try:
            client, reused = await self._ready()
            phase = Phase.MAIL
            try:
                phase = await self._envelope(client, sender, recipients, payload)
            except SMTPServerDisconnected:
                if not reused or phase is not Phase.MAIL:
                    raise
                # The pooled connection had died: replace it (nothing was sent on it).
                phase = Phase.CONNECT
                self.close()
                client, _ = await self._ready()
                phase = Phase.MAIL
                phase = await self._envelope(client, sender, recipients, payload)
            if not await before_dot():
                self.close()  # leaving DATA unfinished makes the server discard the message
                raise SendAborted("the outbox row is no longer held by this sender")
            phase = Phase.DOT
            reply = await self._final_reply(client, data_block(payload))
            if reply.code != 250:
                raise SMTPResponseException(reply.code, reply.message)
            self._last_used = time.monotonic()
            return SmtpReply(reply.code, reply.message)
        except (SendAborted, Utf8NotOffered):
            raise
        except SmtpSendError:
            self.close()
            raise
        except _PhasedRefusal as exc:
            await self._reset_after_refusal(exc.phase)
            raise _refusal(exc.phase, exc.code, exc.message, pool) from None
        except SMTPResponseException as exc:
            await self._reset_after_refusal(phase)
            raise _refusal(phase, exc.code, exc.message, pool) from None
        except ssl.SSLError as exc:
            self.close()
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise SmtpSendError(
                SmtpOutcome(phase, None, f"TLS with {pool.where} failed: {reason}", pool.where)
            ) from None
        except (SMTPServerDisconnected, SMTPTimeoutError, SMTPException, OSError, TimeoutError) as exc:
            self.close()
            raise SmtpSendError(SmtpOutcome(phase, None, _describe(exc), pool.where)) from None
        except BaseException:
            self.close()  # cancelled: the protocol state is unknown
            raise

    async def _final_reply(self, client: SMTP, block: bytes) -> SMTPResponse:
        """Write the message with its final "." and read the server's verdict."""
        timeout = self._timeout
        if self._tap is not None:
            try:
                (reply,) = await self._tap.exchange(block, 1, timeout)
            except PipelineBroken as exc:
                raise SMTPServerDisconnected("Connection lost") from exc.__cause__
            return reply
        protocol = client.protocol
        if protocol is None:
            raise SMTPServerDisconnected("Connection lost")
        protocol.write(block)
        return await protocol.read_response(timeout=timeout)

    async def _envelope(self, client: SMTP, sender: str, recipients: Sequence[str], payload: bytes) -> Phase:
        """MAIL, RCPT and DATA up to the 354; returns the phase reached (DATA).

        The commands are written from addresses the message builder already
        checked, which skips aiosmtplib's per-command address parsing; a refusal
        raises `_PhasedRefusal` with its command's phase.
        """
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        options, encoding = _mail_options(client, sender, recipients, payload, self._pool.where)
        if self._tap is not None:
            return await self._pipelined_envelope(self._tap, sender, recipients, options, encoding)
        mail = await client.execute_command(
            b"MAIL", b"FROM:" + _path(sender, encoding), *(o.encode("ascii") for o in options)
        )
        if mail.code != 250:
            raise _PhasedRefusal(Phase.MAIL, mail.code, mail.message)
        for recipient in recipients:
            rcpt = await client.execute_command(b"RCPT", b"TO:" + _path(recipient, encoding))
            if rcpt.code not in (250, 251):
                raise _PhasedRefusal(Phase.RCPT, rcpt.code, rcpt.message)
        start = await client.execute_command(b"DATA")
        if start.code != 354:
            raise _PhasedRefusal(Phase.DATA, start.code, start.message)
        return Phase.DATA

    async def _pipelined_envelope(
        self, tap: ReplyTap, sender: str, recipients: Sequence[str], options: list[str], encoding: str
    ) -> Phase:
        """MAIL, every RCPT and DATA in one write; the replies are judged in order.

        The first refusal wins, as if the commands had gone one by one. A refusal
        that still got DATA's 354 (some recipients accepted) cannot be undone by
        RSET, which the server would take as message text: the connection is
        closed instead, and the server drops the unfinished message.
        """
        mail = b"MAIL FROM:" + _path(sender, encoding) + b"".join(b" " + o.encode("ascii") for o in options)
        commands = [mail, *(b"RCPT TO:" + _path(r, encoding) for r in recipients), b"DATA"]
        lost: PipelineBroken | None = None
        try:
            replies = await tap.exchange(b"\r\n".join(commands) + b"\r\n", len(commands), self._timeout)
        except PipelineBroken as exc:
            replies, lost = exc.replies, exc
        refusal: _PhasedRefusal | None = None
        for index, reply in enumerate(replies[: len(commands) - 1]):
            phase, accepted = (Phase.MAIL, (250,)) if index == 0 else (Phase.RCPT, (250, 251))
            if reply.code not in accepted:
                refusal = _PhasedRefusal(phase, reply.code, reply.message)
                break
        started = len(replies) == len(commands) and replies[-1].code == 354
        if refusal is not None:
            if started or refusal.code == 421:  # 421: the server is closing the connection
                self.close()
            raise refusal
        if lost is not None:
            raise SMTPServerDisconnected("Connection lost") from lost.__cause__
        if not started:
            raise _PhasedRefusal(Phase.DATA, replies[-1].code, replies[-1].message)
        return Phase.DATA

    @property
    def _timeout(self) -> float:
        return self._pool.account.timeout_seconds

    async def _reset_after_refusal(self, phase: Phase) -> None:
        """A refused command leaves the connection usable once the transaction is reset."""
        client = self._client
        if phase is Phase.CONNECT or client is None or not client.is_connected:
            self.close()
            return
        if phase is not Phase.DOT:  # after the final reply the transaction is already over
            try:
                await client.rset()
            except (SMTPException, OSError, TimeoutError):
                self.close()
                return
        self._last_used = time.monotonic()

    async def quit(self) -> None:
        client, self._client, self._tap = self._client, None, None
        if client is None or not client.is_connected:
            return
        with contextlib.suppress(SMTPException, OSError, TimeoutError):
            await client.quit(timeout=QUIT_TIMEOUT)
        client.close()

    def close(self) -> None:
        client, self._client, self._tap = self._client, None, None
        if client is not None:
            client.close()


class _PhasedRefusal(SMTPResponseException):
    """A refused command and the phase it belongs to."""

    def __init__(self, phase: Phase, code: int, message: str) -> None:
        super().__init__(code, message)
        self.phase = phase


def _refusal(phase: Phase, code: int, message: str, pool: SmtpPool) -> SmtpSendError:
    """A refused command; MAIL refused until STARTTLS (no `username`, `plain`) is the account's fault."""
    outcome = SmtpOutcome(phase, code, message, pool.where)
    if phase is Phase.MAIL and wants_encryption(code, message):
        hint = "set `security: starttls` (or `tls`) for this account"
        return SmtpConfigError(
            SmtpOutcome(phase, code, f"{message} (SMTP account of {pool.name}: {hint})", pool.where)
        )
    return SmtpSendError(outcome)


_UNSAFE = re.compile(r"[\r\n\x00<>]")


def _path(address: str, encoding: str) -> bytes:
    """`<address>` for MAIL/RCPT; refuses what could end the command early."""
    if _UNSAFE.search(address):
        raise SMTPResponseException(553, f"5.1.3 refusing an unsafe address {address!r}")
    return b"<" + address.encode(encoding) + b">"


def _mail_options(
    client: SMTP, sender: str, recipients: Sequence[str], payload: bytes, where: str
) -> tuple[list[str], str]:
    """MAIL FROM parameters: SMTPUTF8 when an address is not ASCII (the message's headers then
    carry it in UTF-8 too, RFC 6532), BODY=8BITMIME for an 8-bit body where offered."""
    options: list[str] = []
    encoding = "ascii"
    wide = next((address for address in (sender, *recipients) if not address.isascii()), None)
    if wide is not None:
        if not client.supports_extension("smtputf8"):
            raise Utf8NotOffered(wide, where)
        options.append("SMTPUTF8")
        encoding = "utf-8"
    if not payload.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    return options, encoding


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SMTPTimeoutError | TimeoutError):
        return f"timed out: {text}"
    if isinstance(exc, SMTPServerDisconnected):
        return f"connection lost: {text}"
    return text


class SmtpPool:
    """Up to `max_connections` reused connections to one SMTP account."""

    def __init__(
        self,
        name: str,
        account: SmtpParams,
        *,
        idle_seconds: float = IDLE_SECONDS,
        local_hostname: str | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self.account = account
        self.idle_seconds = idle_seconds
        self._login = SmtpLogin(name, account, local_hostname=local_hostname, token_provider=token_provider)
        self.where = self._login.where  # host:port, as errors name it
        self.limiter = RateLimiter(account.per_minute)
        self.in_flight = 0
        self.paused_until = 0.0  # time.monotonic(): the server refused the account or the connection
        self.pause_reason = ""
        self._slots = asyncio.Semaphore(account.max_connections)
        self._idle: list[SmtpConnection] = []
        self._closed = False

    @property
    def max_connections(self) -> int:
        return self.account.max_connections

    def pause(self, seconds: float, reason: str) -> None:
        """Stop starting transactions for a while (cannot connect, log in, or a 421)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        self.pause_reason = reason

    def paused_for(self) -> float:
        """Seconds left in the current pause (0: not paused)."""
        return max(0.0, self.paused_until - time.monotonic())

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        """Borrow a connection (waits while all are busy); it goes back to the pool after."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else SmtpConnection(self)
            try:
                yield conn
            finally:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    async def open_client(self) -> SMTP:
        """Connect, secure and log in as the account says; raises `SmtpSendError` (phase CONNECT)."""
        return await self._login.open()

    async def close(self) -> None:
        """Close every idle connection (politely, with a short QUIT)."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(conn.quit() for conn in idle), return_exceptions=True)
