"""`mailcrm run` end to end: a purchase and a rule file become one thank-you email, sent
once from the owner through a real SMTP server, and recorded on the timeline."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servers.smtpd import RecordingSMTPServer

from .conftest import CLI


def test_daemon_plans_and_sends_a_thank_you(cli: CLI, tmp_path: Path, smtpd: RecordingSMTPServer) -> None:
    config = tmp_path / "config"
    (config / "rules").mkdir(parents=True)
    (config / "mailcrm.yaml").write_text(
        f"""\
database:
  url: sqlite:///crm.db
defaults:
  timezone: Asia/Bangkok
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
    smtp:
      host: {smtpd.host}
      port: {smtpd.port}
      security: plain
planning:
  interval_seconds: 1
""",
        encoding="utf-8",
    )
    (config / "rules" / "alice.yaml").write_text(
        "rules:\n"
        "  - name: thank-you\n"
        "    when: {after: purchase, wait: 1h}\n"
        "    template: thank_you\n"
        "    send_window: any\n",
        encoding="utf-8",
    )
    assert cli("rules", "check").code == 0
    added = cli(
        "customers",
        "add",
        "--name",
        "สมศรี ใจดี",
        "-e",
        "somsri@siam.example",
        "--owner",
        "alice@acme.example",
        "--language",
        "th",
    )
    assert added.code == 0, added.stderr
    bought = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    assert (
        cli(
            "purchases",
            "add",
            "1",
            "--product",
            "Inverter 5kW",
            "--amount",
            "32500",
            "--currency",
            "THB",
            "--date",
            bought,
        ).code
        == 0
    )
    forecast = cli(
        "plan", "--days", "1", "--at", (datetime.now(UTC) - timedelta(hours=3)).isoformat(), "--json"
    )
    assert [row["rule"] for row in forecast.json()] == ["thank-you"]

    process = subprocess.Popen(
        [sys.executable, "-m", "mailcrm", "run"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        received = smtpd.handler.wait_for(1, timeout=40)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert len(received) == 1
    message = email.message_from_bytes(received[0].content, policy=email.policy.default)
    assert received[0].rcpt_tos == ("somsri@siam.example",)
    assert "alice@acme.example" in str(message["From"])
    assert message.get_content_type() == "multipart/alternative"

    rows = cli("outbox", "list", "--json").json()
    assert [(r["rule"], r["state"], r["message_id"]) for r in rows] == [
        ("thank-you", "sent", received[0].message_id)
    ]
    kinds = [e["kind"] for e in cli("timeline", "1", "--json").json()]
    assert kinds[0] == "email_out" and "purchase" in kinds
