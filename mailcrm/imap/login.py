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

from aioimaplib.aioimaplib import AUTH, NONAUTH, Command

from mailcrm import netpolicy, oauth
from mailcrm.errors import MailcrmError
from mailcrm.imap.connection import Connection, os_reason
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
from mailcrm.oauth import TokenProvider

log = logging.getLogger(__name__)


async def log_in(conn: Connection, token_provider: TokenProvider | None, connect_timeout: float) -> None:
    """Connect ``conn`` (TLS per its account's ``security``), log in (per ``auth``), read
    the capabilities and enable QRESYNC where offered. ``connect_timeout`` bounds TCP,
    TLS, greeting and STARTTLS. On any failure the connection is dropped."""
    account = conn.account
    secret = await _obtain_secret(conn, token_provider)
    try:
        await _open(conn, connect_timeout)
        await _authenticate(conn, secret)
        await _load_capabilities(conn)
        await _enable_qresync(conn)
    except BaseException:
        conn.drop("connect failed")
        raise
    log.info(
        "IMAP connected to %s:%s as %s",
        conn.host,
        conn.port,
        account.username,
        extra={"action": "imap_connected", "host": conn.host, "user": account.username},
    )


async def _obtain_secret(conn: Connection, token_provider: TokenProvider | None) -> str:
    account = conn.account
    if account.auth == "xoauth2":
        try:
            token = await oauth.fetch_token(
                token_provider, account, f"IMAP account {account.username}", conn.host
            )
        except ImapError:
            raise
        except MailcrmError as exc:  # no provider, or it failed: as a refused login
            raise ImapAuthError(exc.message, hint=exc.hint) from exc
        conn.secrets.append(token)
        return token
    password = account.secret.resolve(f"{account.username} imap")
    conn.secrets.append(password)
    return password


def _ssl_context(conn: Connection) -> ssl.SSLContext:
    ca_file = conn.account.ca_file
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ImapConnectionError(
            f"cannot load ca_file {ca_file} for IMAP server {conn.host}:{conn.port}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="`ca_file` must name a readable PEM file with the CA certificate(s)",
        ) from None


async def _open(conn: Connection, connect_timeout: float) -> None:
    security = conn.account.security
    context = _ssl_context(conn) if security != "plain" else None
    try:
        async with asyncio.timeout(connect_timeout):
            if security == "plain":
                _refuse_remote_plain(conn, await _resolve(conn))
            transport, _ = await conn.loop.create_connection(
                lambda: conn.protocol,
                conn.host,
                conn.port,
                ssl=context if security == "tls" else None,
                ssl_handshake_timeout=connect_timeout if security == "tls" else None,
            )
            _keepalive(transport)
            if security == "plain":  # the address actually used, in case the name changed
                peer = transport.get_extra_info("peername")
                _refuse_remote_plain(conn, [peer[0]] if peer else [])
            await conn.race(conn.protocol.wait(f"{AUTH}|{NONAUTH}"), "greeting")
            if security == "starttls":
                assert context is not None
                await _starttls(conn, context, connect_timeout)
    except TimeoutError:
        raise ImapTimeout(
            f"no IMAP greeting from {conn.host}:{conn.port} within {connect_timeout:g} s",
            hint="check `host`, `port` and `security` (tls usually on 993, starttls on 143)",
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise _certificate_error(conn, exc) from None
    except ssl.SSLError as exc:
        raise ImapConnectionError(
            f"TLS handshake with IMAP server {conn.host}:{conn.port} failed: {exc.reason or exc}",
            hint="check `security`: tls (implicit, usually port 993) or starttls (usually 143)",
        ) from None
    except OSError as exc:
        raise ImapConnectionError(
            f"cannot connect to IMAP server {conn.host}:{conn.port}: {os_reason(exc)}"
        ) from None


async def _resolve(conn: Connection) -> list[str]:
    try:
        return await netpolicy.resolve_async(conn.host, conn.port)
    except OSError as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else os_reason(exc)
        raise ImapConnectionError(f"cannot resolve IMAP server {conn.host}: {reason}") from None


def _refuse_remote_plain(conn: Connection, addresses: list[str]) -> None:
    """`security: plain` only to loopback (`mailcrm.netpolicy`): checked before the greeting."""
    reason = netpolicy.plain_refusal(conn.host, addresses)
    if reason is None:
        return
    raise ImapSecurityError(
        f"IMAP account {conn.account.username}: refusing `security: plain` to {conn.host}:{conn.port} "
        f"({reason}): the password would cross the network unencrypted",
        hint=netpolicy.PLAIN_HINT,
    )


def _certificate_error(conn: Connection, exc: ssl.SSLCertVerificationError) -> ImapConnectionError:
    reason = exc.verify_message or exc.reason or str(exc)
    if "mismatch" in str(reason).lower():
        hint = "connect using a host name the server certificate is issued for"
    elif conn.account.ca_file:
        hint = f"the certificate is not signed by the CA in ca_file {conn.account.ca_file}"
    else:
        hint = "if the server uses a private CA, set `ca_file:` to that CA certificate (PEM)"
    return ImapConnectionError(
        f"TLS certificate of IMAP server {conn.host}:{conn.port} rejected: "
        f"certificate verify failed: {reason}",
        hint=hint,
    )


async def _starttls(conn: Connection, context: ssl.SSLContext, connect_timeout: float) -> None:
    caps = frozenset(cap.upper() for cap in conn.protocol.capabilities)
    if "STARTTLS" not in caps:
        raise ImapConnectionError(
            f"IMAP server {conn.host}:{conn.port} does not offer STARTTLS",
            hint="use `security: tls` (usually port 993); mailcrm never falls back to plain text",
        )
    reply = await conn.execute("STARTTLS", lambda: Command("STARTTLS", conn.tag(), loop=conn.loop))
    conn.expect_ok(reply, "STARTTLS")
    new_transport = await conn.loop.start_tls(
        conn.protocol.transport,
        conn.protocol,
        context,
        server_hostname=conn.host,
        ssl_handshake_timeout=connect_timeout,
    )
    conn.protocol.transport = new_transport
    # Capabilities seen before TLS may have been tampered with (RFC 8314): read again.
    conn.protocol.capabilities = set()


async def _authenticate(conn: Connection, secret: str) -> None:
    account = conn.account
    if conn.protocol.state == AUTH:
        return  # PREAUTH greeting
    caps = await _load_capabilities(conn)
    user = account.username
    answers: list[bytes]
    args: tuple[str, ...]
    if account.auth == "login":
        if "LOGINDISABLED" in caps:
            raise ImapAuthError(
                f"IMAP server {conn.host} refuses LOGIN for {user} on this connection",
                hint="use `security: tls` or `starttls`, or `auth: plain`",
            )
        password = secret.encode("utf-8")
        name, args, answers, extra = "LOGIN", (quote(user), f"{{{len(password)}}}"), [password], b"*"
    else:
        mechanism = "PLAIN" if account.auth == "plain" else "XOAUTH2"
        if f"AUTH={mechanism}" not in caps:
            raise ImapAuthError(
                f"IMAP server {conn.host} does not offer AUTHENTICATE {mechanism} for {user}",
                hint="set `auth:` to a mechanism the server lists (login, plain or xoauth2)",
            )
        if mechanism == "PLAIN":
            encoded = base64.b64encode(b"\0" + user.encode() + b"\0" + secret.encode("utf-8"))
        else:
            encoded = oauth.xoauth2_response(user, secret)
        conn.secrets.append(encoded.decode("ascii"))
        # XOAUTH2 reports failures as a challenge that must be answered with an empty line.
        extra = b"" if mechanism == "XOAUTH2" else b"*"
        name, args, answers = "AUTHENTICATE", (mechanism,), [encoded]
    holder: list[_ChallengeCommand] = []

    def make() -> _ChallengeCommand:
        command = _ChallengeCommand(
            name,
            conn.tag(),
            *args,
            loop=conn.loop,
            answers=answers,
            respond=conn.write,
            extra_answer=extra,
        )
        holder.append(command)
        return command

    reply = await conn.execute(name, make)
    if reply.result == "OK":
        conn.protocol.state = AUTH
        return
    text = conn.masked(reply.text)
    code = response_code(reply.text)
    if reply.result == "NO" and code == "UNAVAILABLE":
        raise ImapConnectionError(
            f"IMAP server {conn.host} cannot log in {user} right now: {text}",
        )
    if reply.result != "NO":
        raise ImapProtocolError(
            f"IMAP {name} for {user} on {conn.host} failed: {reply.result} {text}",
            command=name,
            server_text=text,
        )
    detail = oauth.error_detail(holder[0].challenges) if holder and account.auth == "xoauth2" else ""
    raise ImapAuthError(
        f"IMAP login failed for {user} on {conn.host}:{conn.port}: {text}{detail}",
        hint="check the username and the password (or token) configured for this account",
    )


async def _load_capabilities(conn: Connection) -> frozenset[str]:
    reply = await conn.execute("CAPABILITY", lambda: Command("CAPABILITY", conn.tag(), loop=conn.loop))
    conn.expect_ok(reply, "CAPABILITY")
    caps = parse_capabilities(reply.lines)
    conn.capabilities = caps
    # aioimaplib checks its own set before IDLE and MOVE.
    conn.protocol.capabilities = set(caps)
    return caps


async def _enable_qresync(conn: Connection) -> None:
    """ENABLE QRESYNC where offered, so expunges since a known MODSEQ can be asked for
    (``VANISHED``); it must come before any SELECT (RFC 5161)."""
    if not conn.has_qresync or "ENABLE" not in conn.capabilities:
        return
    reply = await conn.execute("ENABLE", lambda: Command("ENABLE", conn.tag(), "QRESYNC", loop=conn.loop))
    enabled = b" ".join(bytes(line) for line in reply.lines if isinstance(line, bytes)).upper()
    conn.qresync_enabled = reply.result == "OK" and b"QRESYNC" in enabled


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
