"""The settings cut into the shells' typed parts: nothing lost on the way, no secret in a repr.

Each shell only sees what `mailcrm.wiring` hands it, so a setting the cut forgets is a
setting that silently stops working; and the parts end up in logs and tracebacks, so
they must carry where a secret lives, never the secret itself.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mailcrm import wiring
from mailcrm.errors import SecretError
from mailcrm.settings import Settings, from_document
from mailcrm.yamlfile import load_text

CONFIG = """\
salespeople:
  - name: Ann Lee
    email: Ann@Acme.Example
    language: th
    timezone: Asia/Bangkok
    imap:
      host: imap.acme.example
      security: starttls
      username: ann
      auth: plain
      password_env: ANN_IMAP_PASSWORD
      ca_file: ca.pem
      folders: [Archive, Clients]
      timeout_seconds: 20
    smtp:
      host: smtp.acme.example
      username: ann
      auth: login
      password_file: /run/secrets/ann-smtp
      max_connections: 2
      per_minute: 30
      per_day: 500
      timeout_seconds: 15
  - name: Bo
    email: bo@acme.example
sync:
  create_leads: false
  lead_source: imap
  fold_addresses: true
  batch_messages: 10
  batch_bytes: 65536
  poll_seconds: 5
  idle_renew_seconds: 120
  reconnect_max_seconds: 7
  auth_retry_seconds: 9
sending:
  soft_bounce_limit: 2
  soft_bounce_window: 3d
"""


def _settings() -> Settings:
    return from_document(load_text(CONFIG, "/etc/mailcrm/mailcrm.yaml"))


def test_an_imap_account_keeps_every_connection_setting_and_the_secrets_reference_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANN_IMAP_PASSWORD", "imap-s3cret-value")
    account = _settings().salespeople[0].imap
    assert account is not None
    params = wiring.imap_params(account)
    assert (params.host, params.port, params.security, params.username, params.auth) == (
        "imap.acme.example",
        143,
        "starttls",
        "ann",
        "plain",
    )
    assert (params.ca_file, params.timeout_seconds) == (Path("ca.pem"), 20.0)
    assert params.secret.resolve("ann imap") == "imap-s3cret-value"  # read when logging in
    assert "imap-s3cret-value" not in repr(params)
    assert "ANN_IMAP_PASSWORD" in repr(params)


def test_an_smtp_account_keeps_its_limits_and_reads_its_secret_only_when_asked() -> None:
    account = _settings().salespeople[0].smtp
    assert account is not None
    params = wiring.smtp_params(account)
    assert (params.host, params.port, params.security, params.username, params.auth) == (
        "smtp.acme.example",
        465,
        "tls",
        "ann",
        "login",
    )
    assert (params.max_connections, params.per_minute, params.per_day, params.timeout_seconds) == (
        2,
        30,
        500,
        15.0,
    )
    with pytest.raises(SecretError, match="ann smtp: cannot read password file /run/secrets/ann-smtp"):
        params.secret.resolve("ann smtp")


def test_the_team_and_the_mailboxes_follow_the_file() -> None:
    settings = _settings()
    assert [(m.email, m.name, m.language, m.timezone) for m in wiring.team(settings)] == [
        ("ann@acme.example", "Ann Lee", "th", "Asia/Bangkok"),
        ("bo@acme.example", "Bo", None, None),
    ]
    [mailbox] = wiring.mailboxes(settings)  # Bo has no IMAP account: no mailbox to sync
    assert (mailbox.email, mailbox.name, mailbox.folders) == (
        "ann@acme.example",
        "Ann Lee",
        ("Archive", "Clients"),
    )
    assert mailbox.imap.host == "imap.acme.example"


def test_the_sync_policy_carries_sync_and_the_soft_bounce_rule_of_sending() -> None:
    policy = wiring.sync_policy(_settings())
    assert (policy.poll_seconds, policy.idle_renew_seconds) == (5.0, 120.0)
    assert (policy.reconnect_max_seconds, policy.auth_retry_seconds) == (7.0, 9.0)
    assert (policy.batch_messages, policy.batch_bytes) == (10, 65536)
    match = policy.match
    assert (match.create_leads, match.lead_source, match.fold_addresses) == (False, "imap", True)
    assert (match.soft_bounce_limit, match.soft_bounce_window) == (2, timedelta(days=3))
