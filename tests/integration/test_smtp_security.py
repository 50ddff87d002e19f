"""`security: plain` only to loopback, and a server that wants TLS before AUTH is a settings
problem: the account pauses, its emails wait unattempted, and the error says what to set.

Against real aiosmtpd servers on loopback; 192.0.2.1 (TEST-NET-1) is never connected to:
the refusal comes before any connection is attempted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sendrunner import OWNER, make_settings, plan, seed_customers, send_batch
from servers.smtp_auth import AuthHandler, AuthSMTPServer
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm import netpolicy, wiring
from mailcrm.imap.client import ImapClient
from mailcrm.imap.errors import ImapAuthError
from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import ImapAccount, Settings, SmtpAccount
from mailcrm.smtp.errors import SmtpConfigError
from mailcrm.smtp.login import SmtpLogin
from mailcrm.smtp.params import SmtpParams
from mailcrm.smtp.pool import SmtpPool
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem

USER = "alice.smtp@acme.example"
PASSWORD = "s3cret-pw-42"


class TlsOnlyAuthServer(AuthSMTPServer):
    """Offers AUTH only after STARTTLS (`auth_require_tls`), as Postfix's smtpd_tls_auth_only."""

    def controller_options(self) -> dict[str, Any]:
        return {**super().controller_options(), "auth_require_tls": True}


class AdvertisingHandler(AuthHandler):
    """Lists AUTH in the clear but answers it with 538 5.7.11 (aiosmtpd's own refusal)."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        responses.insert(-1, "250-AUTH LOGIN PLAIN")
        return responses


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fails the test if anything opens a connection (records the attempt)."""
    attempts: list[object] = []

    async def refuse(self: object, *args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError(f"connection attempted: {args}")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)
    return attempts


def _account(port: int, **overrides: Any) -> SmtpParams:
    return wiring.smtp_params(
        SmtpAccount.model_validate(
            {"host": "127.0.0.1", "port": port, "security": "plain", "timeout_seconds": 5.0, **overrides}
        )
    )


def _settings(port: int, **smtp: Any) -> Settings:
    base = make_settings(port, connections=1)
    person = base.salespeople[0]
    assert person.smtp is not None
    account = SmtpAccount.model_validate({**person.smtp.model_dump(), **smtp})
    return base.model_copy(update={"salespeople": [person.model_copy(update={"smtp": account})]})


def _sender(db: Database, settings: Settings, templates: Path) -> Sender:
    sender = Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="test-sender")
    person = settings.salespeople[0]
    assert person.smtp is not None
    sender._pools[person.email] = SmtpPool(
        person.email, wiring.smtp_params(person.smtp)
    )  # kept to look at its pause
    return sender


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())  # type: ignore[arg-type]


async def test_plain_smtp_to_a_remote_address_is_refused_before_connecting(no_connect: list[object]) -> None:
    login = SmtpLogin(OWNER, _account(25, host="192.0.2.1"), local_hostname="test.local")
    with pytest.raises(SmtpConfigError) as info:
        async with asyncio.timeout(5):
            await login.open()
    message = str(info.value)
    assert "192.0.2.1 is not a loopback address" in message and OWNER in message
    assert "security: tls" in message
    assert no_connect == []


async def test_plain_smtp_to_a_name_resolving_elsewhere_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_connect: list[object]
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "192.0.2.9"]

    monkeypatch.setattr(netpolicy, "resolve_async", resolver)
    login = SmtpLogin(OWNER, _account(25, host="relay.test"), local_hostname="test.local")
    expected = re.escape("relay.test resolves to 192.0.2.9, which is not loopback")
    with pytest.raises(SmtpConfigError, match=expected):
        await login.open()
    assert no_connect == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_plain_smtp_to_loopback_sends(smtpd: RecordingSMTPServer, host: str) -> None:
    client = await SmtpLogin(OWNER, _account(smtpd.port, host=host), local_hostname="t.local").open()
    try:
        assert client.is_connected
    finally:
        client.close()


async def test_the_peer_address_actually_used_is_checked(
    smtpd: RecordingSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolved to loopback a moment ago but the connection landed elsewhere."""
    real = netpolicy.plain_refusal
    calls: list[list[str]] = []

    def second_look_remote(host: str, addresses: Any) -> str | None:
        calls.append(list(addresses))
        return real(host, ["192.0.2.5"] if len(calls) == 2 else addresses)

    monkeypatch.setattr(netpolicy, "plain_refusal", second_look_remote)
    with pytest.raises(SmtpConfigError, match=re.escape("192.0.2.5")):
        await SmtpLogin(OWNER, _account(smtpd.port), local_hostname="t.local").open()
    assert calls[1] == ["127.0.0.1"]  # the peer's address
    assert smtpd.messages == []


async def test_plain_imap_to_a_remote_address_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, no_connect: list[object]
) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "imap-secret-1")
    account = wiring.imap_params(
        ImapAccount(
            host="192.0.2.1", port=143, security="plain", username="ann", password_env="TEST_IMAP_PASSWORD"
        )
    )
    with pytest.raises(ImapAuthError) as info:
        async with asyncio.timeout(5):
            await ImapClient.connect(account, connect_timeout=30)
    message = str(info.value)
    assert "IMAP account ann: refusing `security: plain` to 192.0.2.1:143" in message
    assert "security: tls" in message and "imap-secret-1" not in message
    assert not info.value.retry_soon  # reported like a refused login, retried only slowly
    assert no_connect == []


@pytest.fixture
def tls_only_smtpd() -> Iterator[AuthSMTPServer]:
    server = TlsOnlyAuthServer(AuthHandler(USER, password=PASSWORD))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refusing_smtpd() -> Iterator[AuthSMTPServer]:
    server = TlsOnlyAuthServer(AdvertisingHandler(USER, password=PASSWORD))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _assert_paused_as_misconfigured(
    db: Database, sender: Sender, pool: SmtpPool, stats: Any, server: Any
) -> None:
    assert server.messages == []
    assert (stats.sent, stats.retried, stats.failed, stats.deferred) == (0, 0, 0, 3)
    assert pool.paused_for() > sender.policy.base_seconds  # a long pause, not the retry backoff
    rows = _rows(db)
    assert {row.state for row in rows} == {"due"}
    assert all(row.attempts == 0 for row in rows)  # no retry spent on a settings problem
    for row in rows:
        error = row.last_error or ""
        assert OWNER in error and "set `security: starttls` (or `tls`)" in error
        assert PASSWORD not in error


async def test_a_server_offering_no_auth_in_the_clear_pauses_the_account(
    db: Database, tls_only_smtpd: AuthSMTPServer, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    plan(db, seed_customers(db, 3))
    settings = _settings(tls_only_smtpd.port, username=USER, password_env="TEST_SMTP_PASSWORD")
    sender = _sender(db, settings, templates)
    pool = sender._pools[OWNER]
    stats = await send_batch(sender)
    _assert_paused_as_misconfigured(db, sender, pool, stats, tls_only_smtpd)
    assert "offers no AUTH over an unencrypted connection" in (_rows(db)[0].last_error or "")
    assert tls_only_smtpd.handler.logins == []


async def test_538_encryption_required_pauses_the_account(
    db: Database, refusing_smtpd: AuthSMTPServer, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    plan(db, seed_customers(db, 3))
    settings = _settings(refusing_smtpd.port, username=USER, password_env="TEST_SMTP_PASSWORD")
    sender = _sender(db, settings, templates)
    pool = sender._pools[OWNER]
    stats = await send_batch(sender)
    _assert_paused_as_misconfigured(db, sender, pool, stats, refusing_smtpd)
    errors = [row.last_error or "" for row in _rows(db)]
    assert any(error.startswith("538 5.7.11 Encryption required") for error in errors)


async def test_mail_refused_until_starttls_pauses_the_account(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    smtpd.handler.reply_at["MAIL"] = "530 5.7.0 Must issue a STARTTLS command first"
    plan(db, seed_customers(db, 3))
    sender = _sender(db, _settings(smtpd.port), templates)
    pool = sender._pools[OWNER]
    stats = await send_batch(sender)
    _assert_paused_as_misconfigured(db, sender, pool, stats, smtpd)
    assert len(smtpd.handler.rejections) == 1  # one refusal, then the account waits
