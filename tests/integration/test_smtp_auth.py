"""XOAUTH2 and `auth:`: the sender logs in to SMTP as the account says, against a real aiosmtpd.

XOAUTH2 takes its token from the same `TokenProvider` as IMAP. A refused token (or
password) is a failed connection: the row is retried, the account pauses, and the
error names the account. Tokens never reach the log or the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sendrunner import OWNER, make_settings, plan, seed_customers, send_batch
from servers.smtp_auth import AuthHandler, AuthSMTPServer
from sqlalchemy import select

from mailcrm import wiring
from mailcrm.credentials import Account
from mailcrm.render import TemplateRenderer
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings, SmtpAccount
from mailcrm.smtp.pool import SmtpPool
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem

USER = "alice.smtp@acme.example"
GOOD_TOKEN = "ya29.good-token-4f1c"
EXPIRED_TOKEN = "ya29.expired-token-9b2e"
PASSWORD = "s3cret-pw-77"


@pytest.fixture
def auth_smtpd() -> Iterator[AuthSMTPServer]:
    server = AuthSMTPServer(AuthHandler(USER, password=PASSWORD, token=GOOD_TOKEN))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Tokens:
    """A token provider handing out `tokens` in turn (the last one again once they run out)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[Account] = []

    async def __call__(self, account: Account) -> str:
        self.calls.append(account)
        return self.tokens[min(len(self.calls), len(self.tokens)) - 1]


def _settings(port: int, **smtp: Any) -> Settings:
    base = make_settings(port, connections=1)
    person = base.salespeople[0]
    assert person.smtp is not None
    account = SmtpAccount.model_validate({**person.smtp.model_dump(), "username": USER, **smtp})
    return base.model_copy(update={"salespeople": [person.model_copy(update={"smtp": account})]})


def _sender(db: Database, settings: Settings, templates: Path, tokens: Tokens | None = None) -> Sender:
    sender = Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="test-sender")
    person = settings.salespeople[0]
    assert person.smtp is not None
    # The daemon has no provider to give yet; the pool takes one as IMAP's connect does.
    sender._pools[person.email] = SmtpPool(
        person.email, wiring.smtp_params(person.smtp), token_provider=tokens
    )
    return sender


def _rows(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.execute(select(OutboxItem).order_by(OutboxItem.id)).scalars())  # type: ignore[arg-type]


async def test_xoauth2_logs_in_with_the_providers_token(
    db: Database, auth_smtpd: AuthSMTPServer, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan(db, seed_customers(db, 1))
    tokens = Tokens(GOOD_TOKEN)
    settings = _settings(auth_smtpd.port, auth="xoauth2")
    stats = await send_batch(_sender(db, settings, templates, tokens))
    assert stats.sent == 1
    assert auth_smtpd.handler.logins == [("XOAUTH2", USER, GOOD_TOKEN)]
    assert [m.rcpt_tos for m in auth_smtpd.messages] == [("c0@example.org",)]
    assert tokens.calls == [wiring.smtp_params(settings.salespeople[0].smtp)]
    assert GOOD_TOKEN not in caplog.text


async def test_an_expired_token_is_replaced_once(
    db: Database, auth_smtpd: AuthSMTPServer, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan(db, seed_customers(db, 1))
    tokens = Tokens(EXPIRED_TOKEN, GOOD_TOKEN)
    stats = await send_batch(_sender(db, _settings(auth_smtpd.port, auth="xoauth2"), templates, tokens))
    assert stats.sent == 1 and len(auth_smtpd.messages) == 1
    assert [token for _, _, token in auth_smtpd.handler.logins] == [EXPIRED_TOKEN, GOOD_TOKEN]
    assert EXPIRED_TOKEN not in caplog.text and GOOD_TOKEN not in caplog.text


async def test_a_refused_token_retries_the_row_and_pauses_the_account(
    db: Database, auth_smtpd: AuthSMTPServer, templates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan(db, seed_customers(db, 3))
    tokens = Tokens(EXPIRED_TOKEN)  # the provider cannot refresh: the same token again
    sender = _sender(db, _settings(auth_smtpd.port, auth="xoauth2"), templates, tokens)
    pool = sender._pools[OWNER]
    stats = await send_batch(sender)
    assert auth_smtpd.messages == []
    assert auth_smtpd.handler.logins == [("XOAUTH2", USER, EXPIRED_TOKEN)]  # not tried twice
    assert (stats.retried, stats.deferred, stats.failed) == (1, 2, 0)
    assert pool.paused_for() > 0
    rows = _rows(db)
    assert {r.state for r in rows} == {"due"}
    tried = next(r for r in rows if r.attempts == 1)
    error = tried.last_error or ""
    assert error.startswith("535 5.7.8 Username and Password not accepted")
    assert '"status":"401"' in error  # the server's detail from the error challenge
    assert USER in error and OWNER in error and "OAuth2 token" in error
    assert f"127.0.0.1:{auth_smtpd.port}" in error
    assert all(r.last_error == pool.pause_reason for r in rows if r.attempts == 0)
    assert EXPIRED_TOKEN not in caplog.text and all(EXPIRED_TOKEN not in (r.last_error or "") for r in rows)


async def test_xoauth2_reads_the_token_from_the_accounts_file_at_each_login(
    db: Database,
    auth_smtpd: AuthSMTPServer,
    templates: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `mailcrm run` does: no provider, the access token lives in `password_file`,
    which a refresher rewrites; each new connection reads it again."""
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "smtp-token"
    token_file.write_text(GOOD_TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    settings = _settings(auth_smtpd.port, auth="xoauth2", password_file=str(token_file))
    ids = seed_customers(db, 2)
    plan(db, ids[:1])
    first = await send_batch(
        Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="test-sender")
    )
    token_file.write_text("ya29.refreshed-token-1d7a", encoding="utf-8")
    auth_smtpd.handler.token = "ya29.refreshed-token-1d7a"  # the provider rotated it
    plan(db, ids[1:])
    second = await send_batch(
        Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="test-sender")
    )
    assert (first.sent, second.sent) == (1, 1)
    assert auth_smtpd.handler.logins == [
        ("XOAUTH2", USER, GOOD_TOKEN),
        ("XOAUTH2", USER, "ya29.refreshed-token-1d7a"),
    ]
    assert GOOD_TOKEN not in caplog.text and "refreshed-token" not in caplog.text


async def test_xoauth2_without_a_token_says_where_to_put_one(
    db: Database, auth_smtpd: AuthSMTPServer, templates: Path
) -> None:
    plan(db, seed_customers(db, 1))
    settings = _settings(auth_smtpd.port, auth="xoauth2", password_env=None, password_file=None)
    stats = await send_batch(_sender(db, settings, templates))
    assert stats.retried == 1 and auth_smtpd.handler.logins == []
    (row,) = _rows(db)
    assert row.state == "due"
    assert f"SMTP account {USER} of {OWNER}" in (row.last_error or "")
    assert "has no access token" in (row.last_error or "")
    assert "password_file" in (row.last_error or "")


@pytest.mark.parametrize(("auth", "mechanism"), [("plain", "PLAIN"), ("login", "LOGIN")])
async def test_password_mechanism_follows_auth(
    db: Database,
    auth_smtpd: AuthSMTPServer,
    templates: Path,
    monkeypatch: pytest.MonkeyPatch,
    auth: str,
    mechanism: str,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    plan(db, seed_customers(db, 1))
    settings = _settings(auth_smtpd.port, auth=auth, password_env="TEST_SMTP_PASSWORD")
    assert (await send_batch(_sender(db, settings, templates))).sent == 1
    assert auth_smtpd.handler.logins == [(mechanism, USER, PASSWORD)]


async def test_a_refused_password_names_the_account(
    db: Database, auth_smtpd: AuthSMTPServer, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-password-31")
    plan(db, seed_customers(db, 1))
    sender = _sender(db, _settings(auth_smtpd.port, password_env="TEST_SMTP_PASSWORD"), templates)
    pool = sender._pools[OWNER]
    assert (await send_batch(sender)).retried == 1
    assert pool.paused_for() > 0
    (row,) = _rows(db)
    assert row.state == "due"
    assert f"SMTP login as {USER} for {OWNER} refused" in (row.last_error or "")
    assert "wrong-password-31" not in (row.last_error or "")


async def test_a_mechanism_the_server_does_not_offer_is_refused(db: Database, templates: Path) -> None:
    with AuthSMTPServer(AuthHandler(USER, password=PASSWORD), exclude=["LOGIN"]) as server:
        plan(db, seed_customers(db, 1))
        settings = _settings(server.port, auth="login", password_env="TEST_UNUSED")
        assert (await send_batch(_sender(db, settings, templates))).retried == 1
        assert server.handler.logins == []
    (row,) = _rows(db)
    assert "does not offer AUTH LOGIN" in (row.last_error or "")
    assert "PLAIN" in (row.last_error or "")
