"""The command line as a user sees it: output, JSON shapes, exit codes, error messages."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import typer

from mailcrm.cli import app, main

from .conftest import CLI, write_config

CONFIG = """\
database:
  url: sqlite:///crm.db
defaults:
  timezone: Asia/Bangkok
  language: en
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
  - name: Somchai Jaidee
    email: somchai@acme.example
"""


def _leaf_commands() -> list[tuple[list[str], typer.main.TyperCommand]]:  # type: ignore[name-defined]
    root = typer.main.get_command(app)
    found = []

    def walk(command, path):  # type: ignore[no-untyped-def]
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, [*path, name])
        else:
            found.append((path, command))

    walk(root, [])
    return found


def test_every_command_has_help_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    leaves = _leaf_commands()
    assert len(leaves) >= 16
    for path, command in leaves:
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in options, f"mailcrm {' '.join(path)} has no --json"
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "Usage:" in out and "Example" in out, f"mailcrm {' '.join(path)} --help lacks an example"


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


def test_customer_lifecycle(cli: CLI, configured: Path) -> None:
    added = cli(
        "customers", "add", "--name", "สมศรี ใจดี", "-e", "Somsri@Example.co.th",
        "--owner", "somchai@acme.example", "--tag", "vip", "--birthday", "1988-02-29",
        "--timezone", "Asia/Bangkok", "--language", "th", "--set", "vat_id=TH1", "--json",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    customer = added.json()
    assert customer["email"] == "somsri@example.co.th"
    assert (configured / "config" / "crm.db").exists()  # relative to the config file

    second = cli("customers", "add", "--name", "Emily Carter", "-e", "emily@harbour.example")
    assert second.code == 0
    assert "added customer 2" in second.stderr

    listed = cli("customers", "list", "--json").json()
    assert [c["name"] for c in listed] == ["สมศรี ใจดี", "Emily Carter"]
    assert set(listed[0]) >= {
        "id", "name", "email", "emails", "phone", "birthday", "timezone", "language",
        "owner", "lead_source", "status", "company", "tags", "custom", "created_at",
    }  # fmt: skip
    assert cli("customers", "list", "harbour", "--json").json()[0]["name"] == "Emily Carter"

    edited = cli(
        "customers", "edit", "somsri@example.co.th", "--add-email", "somsri.home@mail.example",
        "--company", "Siam Solar", "--json",
    ).json()  # fmt: skip
    assert [a["address"] for a in edited["emails"]] == [
        "somsri@example.co.th",
        "somsri.home@mail.example",
    ]
    assert edited["company"] == "Siam Solar"

    shown = cli("customers", "show", "somsri.home@mail.example", "--json").json()
    assert shown["id"] == customer["id"]
    assert shown["emails"][0]["suppressed"] is False
    text = cli("customers", "show", "1")
    assert "somsri.home@mail.example" in text.stdout and "Siam Solar" in text.stdout

    assert cli("notes", "add", "1", "Met at the Bangkok seminar").code == 0
    bought = cli(
        "purchases", "add", "1", "--product", "Inverter 5kW", "--amount", "32500",
        "--currency", "THB", "--date", "2026-01-15", "--json",
    )  # fmt: skip
    assert bought.code == 0, bought.stderr
    timeline = cli("timeline", "somsri@example.co.th", "--json").json()
    assert [e["kind"] for e in timeline] == ["note", "purchase"]
    assert set(timeline[0]) >= {"kind", "at", "direction", "message_id", "subject", "summary"}
    assert cli("customers", "show", "1", "--json").json()["status"] == "customer"

    assert cli("customers", "archive", "2").code == 0
    assert [c["id"] for c in cli("customers", "list", "--json").json()] == [1]
    assert [c["id"] for c in cli("customers", "list", "--all", "--json").json()] == [1, 2]


def test_export_reimports_without_change(cli: CLI, configured: Path) -> None:
    for name, email in (("王芳", "wang@golden.example"), ("سارا احمدی", "sara@persepolis.example")):
        assert cli("customers", "add", "--name", name, "-e", email, "--tag", "seminar").code == 0
    exported = cli("customers", "export")
    assert exported.code == 0
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["name"] for r in rows] == ["王芳", "سارا احمدی"]
    (configured / "export.csv").write_text(exported.stdout, encoding="utf-8")
    before = cli("customers", "list", "--json").json()
    again = cli("customers", "import", "export.csv", "--json")
    assert again.code == 0, again.stdout + again.stderr
    report = again.json()
    assert report["created"] == 0 and report["updated"] == 0 and report["unchanged"] == 2
    assert cli("customers", "list", "--json").json() == before
    lines = cli("customers", "export", "--json").stdout.splitlines()
    assert len(lines) == 2


def test_user_errors_exit_1_without_traceback(cli_process: CLI, configured: Path) -> None:
    """Through the real console script: the exit status the shell sees."""
    cli = cli_process
    bad = cli("customers", "add", "--name", "X", "-e", "not-an-address")
    assert bad.code == 1
    assert "error: email: invalid email address 'not-an-address'" in bad.stderr
    assert "Traceback" not in bad.stderr

    assert cli("db", "upgrade").code == 0  # `customers show` reads: it creates no database
    missing = cli("customers", "show", "nobody@x.example")
    assert missing.code == 1 and "no customer with address nobody@x.example" in missing.stderr

    owner = cli("customers", "add", "--name", "X", "-e", "x@x.example", "--owner", "ghost@x.example")
    assert owner.code == 1 and "unknown salesperson" in owner.stderr and "salespeople:" in owner.stderr


def test_usage_errors_exit_2(cli_process: CLI, configured: Path) -> None:
    """Through the real console script: the exit status the shell sees."""
    cli = cli_process
    result = cli("customers", "add", "--name", "X")
    assert result.code == 2
    assert "Missing option" in result.stderr
    assert cli("no-such-command").code == 2


def test_broken_config_names_file_line_and_field(cli: CLI, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("salespeople:\n  - name: A\n    email: a@x.example\n    smtp:\n"
                      "      host: h\n      password: x\n", encoding="utf-8")  # fmt: skip
    result = cli("--config", str(config), "customers", "list")
    assert result.code == 1
    assert (
        f"{config}:6:7: salespeople.0.smtp.password: inline `password:` is not accepted"
        in (result.stderr.replace("\n", " "))
        or f"{config}:6:7" in result.stderr
    )
    assert "password_env" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_writes_a_config_that_checks(cli: CLI, tmp_path: Path) -> None:
    result = cli("init", "conf", "--json")
    assert result.code == 0
    written = result.json()["config"]
    check = cli("--config", written, "config", "check", "--json")
    assert check.code == 0, check.stderr
    assert [p["email"] for p in check.json()["salespeople"]] == [
        "alice@acme.example",
        "somchai@acme.example",
    ]
    again = cli("init", "conf")
    assert again.code == 1 and "--force" in again.stderr
    secrets = cli("--config", written, "config", "check", "--secrets")
    assert secrets.code == 1 and "ALICE_IMAP_PASSWORD is not set" in secrets.stderr


def test_db_upgrade_and_status(cli: CLI, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/other.db"
    env = {"MAILCRM_DATABASE_URL": url}
    first = cli("db", "upgrade", "--json", extra_env=env).json()
    assert first["from"] is None and first["to"]
    second = cli("db", "upgrade", "--json", extra_env=env).json()
    assert second["from"] == second["to"] == first["to"]
    assert cli("db", "status", "--json", extra_env=env).json()["up_to_date"] is True
