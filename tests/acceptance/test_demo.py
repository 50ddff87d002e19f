"""`mailcrm demo` is the first thing a new user runs: it must work with no setup."""

from __future__ import annotations

import os
import socket
import sys
from email.parser import BytesParser
from email.policy import default
from email.utils import getaddresses
from pathlib import Path

import pytest
import yaml

from .conftest import CLI


def test_demo_builds_a_working_installation(cli: CLI, tmp_path: Path) -> None:
    result = cli("demo", "--dir", "crm-demo", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    summary = report["summary"]
    leads = report["sync"]["leads"]
    assert summary["customers"] == 20 + len(leads)
    assert summary["purchases"] > 0 and summary["notes"] > 0 and summary["companies"] == 5
    assert {"en", "th", "fa", "km"} <= set(summary["by_language"])
    assert any(language.startswith("zh") for language in summary["by_language"])
    assert report["imports"]["customers"]["errors"] == []
    assert report["imports"]["purchases"]["errors"] == []
    assert report["timeline"]["entries"], "the demo shows one customer's timeline"

    config = str(tmp_path / "crm-demo" / "mailcrm.yaml")
    people = cli("--config", config, "customers", "list", "--json").json()
    names = " ".join(p["name"] for p in people)
    for sample in ("สมศรี", "王芳", "سارا", "ដារ៉ា"):
        assert sample in names
    customer_id = report["timeline"]["customer_id"]
    assert cli("--config", config, "timeline", str(customer_id), "--json").json()

    again = cli("demo", "--dir", "crm-demo", "--json")
    assert again.code == 0 and again.json()["summary"]["customers"] == summary["customers"]


def test_demo_syncs_mail_from_its_own_imap_server(cli: CLI, tmp_path: Path) -> None:
    result = cli("demo", "--dir", "crm-demo", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    sync = report["sync"]
    config = str(tmp_path / "crm-demo" / "mailcrm.yaml")
    text = Path(config).read_text(encoding="utf-8")
    assert "password_env:" in text and "security: plain" in text and "password:" not in text

    folders = {
        (mailbox["mailbox"], folder["folder"]): folder
        for mailbox in sync["mailboxes"]
        for folder in mailbox["folders"]
    }
    assert {folder for _, folder in folders} == {"INBOX", "Sent"}
    assert len({mailbox for mailbox, _ in folders}) == 2
    assert all(folder["new_messages"] > 0 for folder in folders.values())
    assert sync["totals"]["new_messages"] == sum(f["new_messages"] for f in folders.values()) >= 40
    assert sync["totals"]["bounces"] == 1 and sync["totals"]["new_addresses"] == 1

    # The customer on show has mail and purchases on one timeline.
    entries = cli("--config", config, "timeline", str(report["timeline"]["customer_id"]), "--json").json()
    kinds = {entry["kind"] for entry in entries}
    assert {"email_out", "reply", "purchase"} <= kinds
    assert all(entry["subject"] for entry in entries if entry["kind"] in ("email_out", "reply"))

    # Unknown senders became leads; the newsletter did not.
    leads = sync["leads"]
    assert len(leads) == 2
    people = {p["id"]: p for p in cli("--config", config, "customers", "list", "--json").json()}
    for lead in leads:
        assert people[lead["id"]]["status"] == "lead"
        assert people[lead["id"]]["lead_source"] == "inbound-email"
    assert not any("energy-expo" in (p["email"] or "") for p in people.values())

    # A hard bounce suppressed the address it names.
    [bounced] = sync["suppressed"]
    shown = cli("--config", config, "customers", "show", bounced["address"], "--json").json()
    flags = {e["address"]: e for e in shown["emails"]}
    assert flags[bounced["address"]]["suppressed"] is True
    assert flags[bounced["address"]]["suppression_reason"] == "hard_bounce"
    bounced_timeline = cli("--config", config, "timeline", bounced["address"], "--json").json()
    assert "bounced" in {entry["kind"] for entry in bounced_timeline}

    # A reply from a private address inside a thread is recorded on the customer who owns the thread.
    [found] = sync["new_addresses"]
    owner = cli("--config", config, "customers", "show", found["address"], "--json").json()
    assert owner["id"] == found["customer_id"] and owner["id"] not in {lead["id"] for lead in leads}
    assert owner["email"] != found["address"], "the imported address stays the primary one"
    assert found["address"] in {e["address"] for e in owner["emails"]}

    status = cli("--config", config, "mailboxes", "status", "--json").json()
    assert {(row["mailbox"], row["folder"]) for row in status} == set(folders)
    assert all(row["errors"] == 0 for row in status)


def test_demo_plans_and_sends_through_its_own_smtp_server(cli: CLI, tmp_path: Path) -> None:
    result = cli("demo", "--dir", "crm-demo", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    sending = report["sending"]
    config = str(tmp_path / "crm-demo" / "mailcrm.yaml")
    # Safe by construction: every SMTP account is on loopback, without a login.
    accounts = [person["smtp"] for person in yaml.safe_load(Path(config).read_text("utf-8"))["salespeople"]]
    assert accounts and all(account["host"] == "127.0.0.1" for account in accounts)
    assert not any({"username", "password_env", "password_file"} & set(account) for account in accounts)

    # Every message sent is a file the user can open: parseable, addressed to a demo customer.
    files = sorted((tmp_path / "crm-demo" / "sent").glob("*.eml"))
    assert len(files) == sending["sent"] == sending["captured"]["count"] > 0
    assert sum(rule["sent"] for rule in sending["rules"].values()) == sending["sent"]
    people = cli("--config", config, "customers", "list", "--json").json()
    addresses = {p["email"] for p in people}
    for file in files:
        message = BytesParser(policy=default).parsebytes(file.read_bytes())
        [(_, to)] = getaddresses([str(message["To"])])
        assert to in addresses
        assert message["Subject"] and message["Message-ID"] and message["List-Unsubscribe"]
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
        assert message["From"].addresses[0].domain == "demo-sales.example"

    # The demo rules were planned: a thank-you for yesterday's purchases, yesterday's birthday.
    rules = sending["rules"]
    assert {"thank-you", "birthday-card", "follow-up"} <= set(rules)
    assert rules["thank-you"]["sent"] >= 1 and rules["birthday-card"]["sent"] == 1
    assert sending["planned"] == sum(rule["planned"] for rule in rules.values())

    # The outbox and the customers' timelines say the same.
    sent_rows = [row for row in cli("--config", config, "outbox", "list", "--json").json()
                 if row["state"] == "sent"]  # fmt: skip
    assert len(sent_rows) == len(files)
    [first] = [row for row in sent_rows if row["rule"] == "birthday-card"]
    timeline = cli("--config", config, "timeline", str(first["customer_id"]), "--json").json()
    assert "email_out" in {entry["kind"] for entry in timeline}


def test_demo_leaves_no_server_behind(cli: CLI, tmp_path: Path) -> None:
    result = cli("demo", "--dir", "crm-demo", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    for server in (report["sync"]["server"], report["sending"]["server"]):
        assert server["host"] == "127.0.0.1" and server["running"] is False
        with pytest.raises(OSError), socket.create_connection((server["host"], server["port"]), timeout=2):
            pass
    if sys.platform.startswith("linux"):
        assert _processes_in(tmp_path) == [], "a process started by the demo is still running"


def test_demo_never_overwrites_a_foreign_folder(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me", encoding="utf-8")
    result = cli("demo", "--dir", "precious")
    assert result.code == 1
    assert "not a mailcrm demo folder" in result.stderr
    assert (tmp_path / "precious" / "notes.txt").read_text(encoding="utf-8") == "keep me"


def _processes_in(folder: Path) -> list[int]:
    """Processes (other than this one) whose working directory is `folder`: the demo's children
    would have inherited it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
        except OSError:
            continue
    return found
