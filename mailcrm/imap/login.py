"""Opening a session: TCP and TLS (implicit or STARTTLS), login, capabilities, ENABLE QRESYNC.

Secrets never become command arguments (LOGIN sends the password as a literal, SASL sends
its response after the continuation), so they cannot leak into aioimaplib's debug log or
exception texts; every secret is also remembered for masking server texts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
from typing import Self

from aioimaplib.aioimaplib import AUTH, NONAUTH, Command

from mailcrm import netpolicy, oauth
from mailcrm.errors import MailcrmError
from mailcrm.imap.connection import DEFAULT_IDLE_RENEW, DEFAULT_POLL_INTERVAL, Connection, os_reason
from mailcrm.imap.errors import (
    ImapAuthError,
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    ImapSecurityError,
    ImapTimeout,
)
from mailcrm.imap.parse import parse_capabilities, quote, response_code
from mailcrm.imap.protocol import _ChallengeCommand
from mailcrm.oauth import TokenProvider as TokenProvider  # re-exported by imap.client
from mailcrm.settings import ImapAccount

log = logging.getLogger(__name__)


class Login(Connection):
    """`connect`: a new connection, logged in, with its capabilities read."""

    @classmethod
    async def connect(
        cls,
        account: ImapAccount,
        *,
        token_provider: TokenProvider | None = None,
        connect_timeout: float = 30.0,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Self:
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
            try:
                token = await oauth.fetch_token(
                    token_provider, account, f"IMAP account {account.username}", self.host
                )
            except ImapError:
                raise
            except MailcrmError as exc:  # no provider, or it failed: as a refused login
                raise ImapAuthError(exc.message, hint=exc.hint) from exc
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
                if security == "plain":
                    self._refuse_remote_plain(await self._resolve())
                transport, _ = await self._loop.create_connection(
                    lambda: self._protocol,
                    self.host,
                    self.port,
                    ssl=context if security == "tls" else None,
                    ssl_handshake_timeout=connect_timeout if security == "tls" else None,
                )
                _keepalive(transport)
                if security == "plain":  # the address actually used, in case the name changed
                    peer = transport.get_extra_info("peername")
                    self._refuse_remote_plain([peer[0]] if peer else [])
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
                f"cannot connect to IMAP server {self.host}:{self.port}: {os_reason(exc)}"
            ) from None

    async def _resolve(self) -> list[str]:
        try:
            return await netpolicy.resolve_async(self.host, self.port)
        except OSError as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else os_reason(exc)
            raise ImapConnectionError(f"cannot resolve IMAP server {self.host}: {reason}") from None

    def _refuse_remote_plain(self, addresses: list[str]) -> None:
        """`security: plain` only to loopback (`mailcrm.netpolicy`): checked before the greeting."""
        reason = netpolicy.plain_refusal(self.host, addresses)
        if reason is None:
            return
        raise ImapSecurityError(
            f"IMAP account {self.account.username}: refusing `security: plain` to {self.host}:{self.port} "
            f"({reason}): the password would cross the network unencrypted",
            hint=netpolicy.PLAIN_HINT,
        )

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
                encoded = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode("utf-8"))
            else:
                encoded = oauth.xoauth2_response(user, secret)
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
        detail = oauth.error_detail(holder[0].challenges) if holder and account.auth == "xoauth2" else ""
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
