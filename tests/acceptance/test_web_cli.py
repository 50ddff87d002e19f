"""`mailcrm web` and the web endpoint of `mailcrm run`, as a user runs them: the help, the
refusal to start without a signing key, and the daemon serving the unsubscribe link of the
email it just sent, then stopping cleanly on SIGTERM."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from servers.dovecot import free_port
from servers.smtpd import RecordingSMTPServer

from .conftest import CLI

KEY = "0123456789abcdef0123456789abcdef"
NO_KEY = """\
database:
  url: sqlite:///crm.db
web:
  base_url: https://crm.acme.example
"""


def _configure(tmp_path: Path, text: str) -> None:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "mailcrm.yaml").write_text(text, encoding="utf-8")


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, as a service manager stops it; (stdout, stderr)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=10)


def _wait_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} never answered")


def test_web_help_names_its_options(cli: CLI) -> None:
    shown = cli("web", "--help")
    assert shown.code == 0, shown.stderr
    for word in ("--host", "--port", "web.secret_env", "Ctrl-C"):
        assert word in shown.stdout


def test_web_refuses_to_start_without_a_key_naming_the_setting(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path, NO_KEY)
    refused = cli("web")
    assert refused.code == 1
    assert "web.secret_env" in refused.stderr
    assert "openssl rand" in refused.stderr
    assert "Traceback" not in refused.stderr

    _configure(tmp_path, NO_KEY + "  secret_env: MAILCRM_TEST_WEB_KEY\n")
    unset = cli("web")
    assert unset.code == 1
    assert "MAILCRM_TEST_WEB_KEY is not set" in unset.stderr
    short = cli("web", extra_env={"MAILCRM_TEST_WEB_KEY": "short"})
    assert short.code == 1
    assert "at least 32" in short.stderr
    assert "Traceback" not in unset.stderr + short.stderr
    bad_port = cli("web", "--port", "70000")
    assert bad_port.code == 2


def test_run_refuses_links_without_a_key(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path, NO_KEY)
    refused = cli("run")
    assert refused.code == 1
    assert "web.secret_env" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_web_serves_until_sigterm(tmp_path: Path) -> None:
    _configure(tmp_path, NO_KEY + "  secret_env: MAILCRM_TEST_WEB_KEY\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailcrm", "web", "--port", str(port), "--json"],
        cwd=tmp_path,
        env={**env, "MAILCRM_TEST_WEB_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_up(f"http://127.0.0.1:{port}/healthz", process)
        assert httpx.get(f"http://127.0.0.1:{port}/u/1.AAAAAAAAAAAAAAAA").status_code == 404
    finally:
        out, err = _stop(process)
    assert process.returncode == 0, err
    assert f"serving on http://127.0.0.1:{port}" in err
    assert json.loads(out) == {
        "url": f"http://127.0.0.1:{port}",
        "stopped": True,
    }
    assert "Traceback" not in err


def test_run_serves_the_unsubscribe_link_of_the_email_it_sent(
    cli: CLI, tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    port = free_port()
    _configure(
        tmp_path,
        f"""\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
    smtp:
      host: {smtpd.host}
      port: {smtpd.port}
      security: plain
planning:
  interval_seconds: 1
web:
  enabled: true
  port: {port}
  base_url: http://127.0.0.1:{port}
  secret_env: MAILCRM_TEST_WEB_KEY
""",
    )
    (tmp_path / "config" / "rules").mkdir()
    (tmp_path / "config" / "rules" / "alice.yaml").write_text(
        "rules:\n"
        "  - name: thank-you\n"
        "    when: {after: purchase, wait: 1h}\n"
        "    template: thank_you\n"
        "    send_window: any\n",
        encoding="utf-8",
    )
    assert (
        cli(
            "customers",
            "add",
            "--name",
            "Mina",
            "-e",
            "mina@x.example",
            "--language",
            "km",
            "--owner",
            "alice@acme.example",
        ).code
        == 0
    )
    bought = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    added = cli(
        "purchases",
        "add",
        "1",
        "--product",
        "Panel",
        "--amount",
        "100",
        "--currency",
        "USD",
        "--date",
        bought,
    )
    assert added.code == 0, added.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailcrm", "run"],
        cwd=tmp_path,
        env={**env, "MAILCRM_TEST_WEB_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (received,) = smtpd.handler.wait_for(1, timeout=40)
        message = email.message_from_bytes(received.content, policy=email.policy.default)
        links = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert links[0].startswith(f"http://127.0.0.1:{port}/u/") and links[1].startswith("mailto:")
        assert message["List-Unsubscribe-Post"] is None  # not https: no one-click promise
        page = httpx.get(links[0], timeout=10)
        assert page.status_code == 200 and '<html lang="km" dir="ltr">' in page.text
        done = httpx.post(links[0], data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert done.status_code == 204
    finally:
        _out, err = _stop(process)
    assert process.returncode == 0, err
    suppressed = cli("suppress", "list", "--json").json()
    assert [(s["address"], s["reason"]) for s in suppressed] == [("mina@x.example", "unsubscribe")]
    kinds = [e["kind"] for e in cli("timeline", "1", "--json").json()]
    assert "unsubscribed" in kinds
