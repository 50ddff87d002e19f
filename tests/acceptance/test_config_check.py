"""`config check` as a user runs it: plain only to loopback, and no password in its output."""

from __future__ import annotations

from pathlib import Path

from .conftest import CLI, write_config

PASSWORD = "hunter2-db-Secret"

CONFIG = """\
database:
  url: postgresql://crm:{password}@127.0.0.1:5432/crm
salespeople:
  - name: Ann
    email: ann@acme.example
    imap:
      host: {imap}
      security: plain
      username: ann
      password_env: ANN_IMAP
    smtp:
      host: {smtp}
      port: 2525
      security: plain
"""


def _write(tmp_path: Path, imap: str = "127.0.0.1", smtp: str = "localhost", password: str = PASSWORD) -> str:
    write_config(tmp_path, CONFIG.format(imap=imap, smtp=smtp, password=password))
    return str(tmp_path / "config" / "mailcrm.yaml")


def test_plain_to_loopback_passes(cli: CLI, tmp_path: Path) -> None:
    for imap, smtp in (("127.0.0.1", "localhost"), ("::1", "127.0.0.1")):
        result = cli("--config", _write(tmp_path, imap, smtp), "config", "check")
        assert result.code == 0, result.stderr
        assert ": OK" in result.stderr


def test_plain_to_a_remote_host_is_refused_naming_field_and_host(cli: CLI, tmp_path: Path) -> None:
    config = _write(tmp_path, imap="192.0.2.1", smtp="192.0.2.1")
    result = cli("--config", config, "config", "check", "--json")
    assert result.code == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "2 problems" in result.stderr
    assert f"{config}:8:7: salespeople.0.imap.security:" in result.stderr
    assert f"{config}:14:7: salespeople.0.smtp.security:" in result.stderr
    assert "192.0.2.1 is not a loopback address" in result.stderr
    assert "security: tls" in result.stderr


def test_an_unresolvable_plain_host_is_an_error(cli: CLI, tmp_path: Path) -> None:
    result = cli("--config", _write(tmp_path, smtp="no-such-host.invalid"), "config", "check")
    assert result.code == 1
    assert "salespeople.0.smtp.security:" in result.stderr
    assert "cannot resolve no-such-host.invalid" in result.stderr


def test_the_database_password_is_masked_in_every_output(cli: CLI, tmp_path: Path) -> None:
    config = _write(tmp_path)
    outputs = [
        cli("--config", config, "config", "check"),
        cli("--config", config, "config", "check", "--json"),
        cli(
            "--config",
            config,
            "config",
            "check",
            "--json",
            extra_env={"MAILCRM_DATABASE_URL": "postgresql://crm:env-Secret-9@127.0.0.1/crm"},
        ),
    ]
    for result in outputs:
        assert result.code == 0, result.stderr
        whole = result.stdout + result.stderr
        assert PASSWORD not in whole and "env-Secret-9" not in whole
    assert outputs[1].json()["database"] == "postgresql://crm:***@127.0.0.1:5432/crm"
    assert outputs[2].json()["database"] == "postgresql://crm:***@127.0.0.1/crm"


def test_a_password_with_at_signs_is_masked_whole(cli: CLI, tmp_path: Path) -> None:
    result = cli("--config", _write(tmp_path, password="p@ss:Word-77"), "config", "check", "--json")
    assert result.code == 0, result.stderr
    assert "Word-77" not in result.stdout + result.stderr
    assert result.json()["database"] == "postgresql://crm:***@127.0.0.1:5432/crm"
