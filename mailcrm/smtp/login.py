"""Opening an SMTP client for an account: connect, TLS, STARTTLS, EHLO and AUTH.

* TLS is verified (the system CAs, or `ca_file`): `security: tls` is implicit TLS,
  `starttls` refuses a server that does not offer STARTTLS, and `plain` connects only
  to a host that resolves to loopback (`mailcrm.netpolicy`, checked before connecting
  and again on the peer address), so neither password nor mail crosses the network
  in the clear.
* A server that takes AUTH only over TLS (530 "STARTTLS first", 538, or no AUTH offered
  in the clear) is a configuration error (`SmtpConfigError`), not a temporary failure:
  the sender pauses the account and says what to set.
* AUTH follows `auth:` (login, plain, or xoauth2 with a token from `mailcrm.oauth`);
  left out, aiosmtplib picks the best mechanism offered. A refused login is a
  CONNECT failure naming the account, so the sender pauses the account.
* EHLO is always done, so the server's extensions (PIPELINING, SMTPUTF8) are known
  before the first transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from functools import lru_cache

from aiosmtplib import SMTP, SMTPAuthenticationError

from mailcrm import netpolicy, oauth
from mailcrm.domain.retry import Phase, SmtpOutcome
from mailcrm.errors import MailcrmError
from mailcrm.oauth import TokenProvider
from mailcrm.smtp.errors import SmtpConfigError, SmtpSendError, wants_encryption
from mailcrm.smtp.params import SmtpParams

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def local_hostname() -> str:
    """The EHLO name: this host's FQDN when it is a plain host name, else `localhost`."""
    name = socket.getfqdn()
    if name and name.isascii() and re.fullmatch(r"[A-Za-z0-9.-]{1,253}", name):
        return name
    return "localhost"


class SmtpLogin:
    """Opens logged-in clients for one account (`SmtpPool` holds one)."""

    def __init__(
        self,
        name: str,
        account: SmtpParams,
        *,
        local_hostname: str | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.name = name
        self.account = account
        self.where = f"{account.host}:{account.port}"
        self._local_hostname = local_hostname
        self._token_provider = token_provider

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.account.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise self._refuse(f"cannot load ca_file {ca_file} for {self.where}: {reason}") from None

    def _refuse(self, reason: str) -> SmtpSendError:
        return SmtpSendError(SmtpOutcome(Phase.CONNECT, None, reason, self.where))

    def _misconfigured(self, reason: str, code: int | None = None) -> SmtpConfigError:
        return SmtpConfigError(SmtpOutcome(Phase.CONNECT, code, reason, self.where))

    async def _check_plain(self, addresses: list[str] | None = None) -> None:
        """`security: plain` only to loopback: the resolved addresses, then the peer's."""
        host = self.account.host
        if addresses is None:
            try:
                addresses = await netpolicy.resolve_async(host, self.account.port)
            except OSError as exc:
                raise self._refuse(f"cannot resolve SMTP server {host}: {exc.strerror or exc}") from None
        reason = netpolicy.plain_refusal(host, addresses)
        if reason is not None:
            raise self._misconfigured(
                f"SMTP account of {self.name}: refusing `security: plain` to {self.where} ({reason}): "
                f"mail and password would cross the network unencrypted; {netpolicy.PLAIN_HINT}"
            )

    async def open(self) -> SMTP:
        """Connect, secure and log in as the account says; raises `SmtpSendError` (phase CONNECT)."""
        account = self.account
        security = account.security
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(local_hostname)
        context = self._tls_context() if security != "plain" else None
        if security == "plain":
            await self._check_plain()  # before any connection is made
        client = SMTP(
            hostname=account.host,
            port=account.port,
            timeout=account.timeout_seconds,
            use_tls=security == "tls",
            start_tls=False,
            tls_context=context,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
            if security == "plain":
                peer = client.get_transport_info("peername")
                await self._check_plain([peer[0]] if peer else [])
            if security == "starttls":
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise self._refuse(
                        f"{self.where} does not offer STARTTLS, which `security: starttls` requires; "
                        "mailcrm never logs in or sends in the clear"
                    )
                await client.starttls()
            if account.username:
                await self._log_in(client, account.username)
            if client.is_ehlo_or_helo_needed:  # its extensions decide pipelining and SMTPUTF8
                await client.ehlo()
        except BaseException:
            client.close()
            raise
        log.debug(
            "SMTP connected to %s",
            self.where,
            extra={"action": "smtp_connected", "host": self.where, "account": self.name},
        )
        return client

    async def _log_in(self, client: SMTP, user: str) -> None:
        """AUTH as `auth:` says; no `auth:` lets aiosmtplib pick the best password mechanism.

        A refusal becomes a CONNECT-phase `SmtpSendError` naming the account, so the
        sender retries the row and pauses the account, as for any failed connection.
        """
        account = self.account
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        mechanism = account.auth
        if not client.server_auth_methods and account.security == "plain":
            raise self._misconfigured(
                f"{self.where} offers no AUTH over an unencrypted connection, so SMTP account {user} "
                f"of {self.name} cannot log in; set `security: starttls` (or `tls`) for this account"
            )
        if mechanism is not None and mechanism not in client.server_auth_methods:
            offered = " ".join(client.server_auth_methods).upper() or "none"
            raise self._refuse(
                f"{self.where} does not offer AUTH {mechanism.upper()} for SMTP account {user} "
                f"of {self.name} (it offers: {offered}); set `auth:` to one of those, or leave it out"
            )
        if mechanism == "xoauth2":
            await self._log_in_xoauth2(client, user)
            return
        try:
            secret = account.secret.resolve(f"{self.name} smtp")
        except MailcrmError as exc:
            raise self._refuse(exc.message) from None
        try:
            if mechanism == "plain":
                await client.auth_plain(user, secret)
            elif mechanism == "login":
                await client.auth_login(user, secret)
            else:
                await client.login(user, secret)
        except SMTPAuthenticationError as exc:
            if wants_encryption(exc.code, exc.message):
                raise self._needs_tls(exc.code, exc.message, user) from None
            raise self._refused_login(exc.code, exc.message, user, "the username and password") from None

    async def _log_in_xoauth2(self, client: SMTP, user: str) -> None:
        """AUTH XOAUTH2 with a token from the provider; a refused token is replaced once.

        The provider may hand out a cached token that expired a moment ago: asking
        again gives it the chance to refresh. The same token twice is not tried again.
        """
        what = f"SMTP account {user} of {self.name}"
        tried: set[str] = set()
        code, text = 0, ""
        while len(tried) < 2:
            try:
                token = await oauth.fetch_token(self._token_provider, self.account, what, self.where)
            except MailcrmError as exc:
                hint = f"; {exc.hint}" if exc.hint else ""
                raise self._refuse(exc.message + hint) from None
            if token in tried:
                break
            tried.add(token)
            reply = await client.execute_command(b"AUTH", b"XOAUTH2", oauth.xoauth2_response(user, token))
            detail = ""
            if reply.code == 334:  # the error as a base64 JSON challenge; an empty line ends it
                detail = oauth.error_detail([reply.message.strip()])
                reply = await client.execute_command(b"")
            if reply.code == 235:
                return
            code, text = reply.code, reply.message + detail
            if wants_encryption(code, reply.message):
                raise self._needs_tls(code, reply.message, user)
            if not client.is_connected:
                break
        raise self._refused_login(code, text, user, "the OAuth2 token (its scope and expiry)")

    def _refused_login(self, code: int, text: str, user: str, check: str) -> SmtpSendError:
        reason = f"{text} (SMTP login as {user} for {self.name} refused: check {check} of this account)"
        return SmtpSendError(SmtpOutcome(Phase.CONNECT, code, reason, self.where))

    def _needs_tls(self, code: int, text: str, user: str) -> SmtpConfigError:
        return self._misconfigured(
            f"{text} (SMTP account {user} of {self.name}: {self.where} accepts a login only over an "
            "encrypted connection; set `security: starttls` (or `tls`) for this account)",
            code,
        )
