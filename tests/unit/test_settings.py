from __future__ import annotations

import os
from pathlib import Path

import pytest

import mailcrm
from mailcrm.cli.setup import starter_config
from mailcrm.errors import ConfigError, SecretError
from mailcrm.settings import Settings, from_document, load_settings
from mailcrm.yamlfile import load_text


def _load(text: str) -> Settings:
    return from_document(load_text(text, "/etc/mailcrm/mailcrm.yaml"))


def test_shipped_example_is_valid() -> None:
    settings = _load(starter_config())
    assert [p.email for p in settings.salespeople] == ["alice@acme.example", "somchai@acme.example"]
    alice = settings.salespeople[0]
    assert alice.imap is not None and alice.imap.effective_port == 993
    assert alice.smtp is not None and alice.smtp.effective_port == 465
    assert settings.defaults.timezone == "Asia/Bangkok"


def test_repository_example_is_the_shipped_one() -> None:
    repo_copy = Path(__file__).parents[2] / "config" / "mailcrm.example.yaml"
    assert repo_copy.read_text(encoding="utf-8") == starter_config()


def test_inline_password_is_refused_with_line_and_fix() -> None:
    text = (
        "salespeople:\n"
        "  - name: Ann\n"
        "    email: ann@acme.example\n"
        "    smtp:\n"
        "      host: smtp.acme.example\n"
        "      password: hunter2\n"
    )
    with pytest.raises(ConfigError) as info:
        _load(text)
    message = str(info.value)
    assert message.startswith("/etc/mailcrm/mailcrm.yaml:6:7: salespeople.0.smtp.password:")
    assert "password_env" in message and "password_file" in message
    assert "hunter2" not in message


def test_unknown_key_and_bad_timezone_are_all_reported() -> None:
    text = "defaults:\n  timezone: Mars/Olympus\n  langauge: en\n"
    with pytest.raises(ConfigError) as info:
        _load(text)
    message = str(info.value)
    assert "2 problems" in message
    assert ":2:3: defaults.timezone: unknown timezone 'Mars/Olympus'" in message
    assert ":3:3: defaults.langauge: unknown setting" in message


def test_bad_salesperson_email_names_field() -> None:
    with pytest.raises(ConfigError) as info:
        _load("salespeople:\n  - name: Ann\n    email: not-an-address\n")
    assert ":3:5: salespeople.0.email:" in str(info.value)


def test_duplicate_salesperson_is_refused() -> None:
    text = "salespeople:\n  - {name: A, email: a@x.example}\n  - {name: B, email: A@X.example}\n"
    with pytest.raises(ConfigError, match="listed twice"):
        _load(text)


def test_database_url_env_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load("database:\n  url: sqlite:///file.db\n")
    monkeypatch.setenv("MAILCRM_DATABASE_URL", "postgresql://crm@127.0.0.1/crm")
    assert settings.database_url() == "postgresql://crm@127.0.0.1/crm"


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        "salespeople:\n  - name: A\n    email: a@x.example\n"
        "    imap: {host: 127.0.0.1, username: a, password_env: TEST_IMAP_PW}\n"
    )
    imap = settings.salespeople[0].imap
    assert imap is not None
    monkeypatch.delenv("TEST_IMAP_PW", raising=False)
    with pytest.raises(SecretError, match="TEST_IMAP_PW is not set"):
        imap.resolve("a imap")
    monkeypatch.setenv("TEST_IMAP_PW", "s3cret")
    assert imap.resolve("a imap") == "s3cret"


def test_secret_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "smtp.secret"
    secret.write_text("pw\n", encoding="utf-8")
    os.chmod(secret, 0o644)
    settings = _load(
        "salespeople:\n  - name: A\n    email: a@x.example\n"
        f"    smtp: {{host: 127.0.0.1, password_file: {secret}}}\n"
    )
    smtp = settings.salespeople[0].smtp
    assert smtp is not None
    with pytest.raises(SecretError, match="chmod 600"):
        smtp.resolve("a smtp")
    os.chmod(secret, 0o600)
    assert smtp.resolve("a smtp") == "pw"


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mailcrm init"):
        load_settings(tmp_path / "nope.yaml")


def test_no_file_at_all_gives_safe_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILCRM_CONFIG", raising=False)
    settings = load_settings(None)
    assert settings.database.url.startswith("sqlite:///")
    assert settings.salespeople == []


def test_default_templates_ship_inside_the_package() -> None:
    """A wheel install has no checkout around it: the five templates travel as package data."""
    from mailcrm.render import TemplateRenderer

    folder = Settings().templates_path()
    assert Path(mailcrm.__file__).parent in folder.parents
    names = TemplateRenderer(folder).names()
    assert {"thank_you", "anniversary", "birthday", "follow_up", "win_back"} <= names


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("planning", "grace_hours", "1e300", "less than or equal to 8784"),
        ("planning", "lookahead_hours", "99999999999999999999", "less than or equal to 8784"),
        ("planning", "catch_up_days", "1e300", "less than or equal to 366"),
        ("planning", "interval_seconds", ".inf", "finite number"),
        ("planning", "catch_up_days", ".nan", "finite number"),
        ("sending", "retry_max_seconds", "1e300", "less than or equal to 604800"),
        ("sending", "lease_seconds", ".inf", "finite number"),
    ],
)
def test_durations_that_would_overflow_the_planner_are_refused_with_their_line(
    section: str, key: str, value: str, says: str
) -> None:
    """`planning.grace_hours: 1e300` passed `config check`, then `plan --apply` crashed."""
    with pytest.raises(ConfigError) as info:
        _load(f"{section}:\n  {key}: {value}\n")
    assert f"mailcrm.yaml:2:3: {section}.{key}:" in str(info.value) and says in str(info.value)
