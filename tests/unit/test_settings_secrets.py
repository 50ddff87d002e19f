"""Secrets come from exactly one place and are never empty; URLs never show their password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailcrm.errors import ConfigError, SecretError
from mailcrm.log import JsonFormatter, TextFormatter, mask_url
from mailcrm.settings import SmtpAccount, from_document
from mailcrm.yamlfile import load_text


def test_password_env_and_password_file_together_are_refused() -> None:
    text = (
        "salespeople:\n"
        "  - name: Ann\n"
        "    email: ann@acme.example\n"
        "    smtp:\n"
        "      host: smtp.acme.example\n"
        "      username: ann\n"
        "      password_env: ANN_SMTP\n"
        "      password_file: /etc/mailcrm/ann.secret\n"
    )
    with pytest.raises(ConfigError) as info:
        from_document(load_text(text, "/etc/mailcrm/mailcrm.yaml"))
    message = str(info.value)
    assert message.startswith("/etc/mailcrm/mailcrm.yaml:8:7: salespeople.0.smtp.password_file: ")
    assert "both `password_env` and `password_file` are set" in message


@pytest.mark.parametrize("content", ["", "\n", "  \t\n\n"])
def test_an_empty_password_file_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "smtp.secret"
    secret.write_text(content, encoding="utf-8")
    secret.chmod(0o600)
    account = SmtpAccount(host="smtp.acme.example", username="ann", password_file=secret)
    with pytest.raises(SecretError, match=f"ann smtp: password file {secret} is empty"):
        account.resolve("ann smtp")


@pytest.mark.parametrize("value", ["", " ", "\n"])
def test_an_empty_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ANN_SMTP_PASSWORD", value)
    account = SmtpAccount(host="smtp.acme.example", username="ann", password_env="ANN_SMTP_PASSWORD")
    with pytest.raises(SecretError, match="environment variable ANN_SMTP_PASSWORD is empty"):
        account.resolve("ann smtp")


def test_mask_url_hides_only_the_password() -> None:
    assert (
        mask_url("postgresql://crm:s3cr%40t@db.internal:5432/crm")
        == "postgresql://crm:***@db.internal:5432/crm"
    )
    assert mask_url("at 'postgresql://crm:p@ss/w@rd@db/crm' now") == "at 'postgresql://crm:***@db/crm' now"
    assert (
        mask_url("postgresql://crm@db/crm and sqlite:///x.db") == "postgresql://crm@db/crm and sqlite:///x.db"
    )
    assert mask_url("https://crm.acme.example:8443/u/abc") == "https://crm.acme.example:8443/u/abc"


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_log_lines_mask_url_passwords(formatter: logging.Formatter) -> None:
    record = logging.LogRecord(
        "mailcrm.test",
        logging.ERROR,
        __file__,
        1,
        "cannot open %s",
        ("postgresql://crm:hunter2@db/crm",),
        None,
    )
    record.url = "postgresql://crm:hunter2@db/crm"
    line = formatter.format(record)
    assert "hunter2" not in line and "postgresql://crm:***@db/crm" in line


def test_web_secret_env_and_secret_file_together_are_refused() -> None:
    text = "web:\n  secret_env: MAILCRM_WEB_KEY\n  secret_file: /etc/mailcrm/web.key\n"
    with pytest.raises(ConfigError, match="both `secret_env` and `secret_file` are set"):
        from_document(load_text(text, "/etc/mailcrm/mailcrm.yaml"))
