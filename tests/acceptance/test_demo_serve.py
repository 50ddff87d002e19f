"""`mailcrm demo --serve`: the real daemon on the demo's own mail servers until Ctrl-C.

What a new user does: start it, deliver an email into a demo mailbox, see it on the
customer's timeline, press Ctrl-C, and find nothing left running.
"""

from __future__ import annotations

import imaplib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import pytest

from .conftest import CLI

WAIT_SECONDS = 180.0  # bound on each wait, generous for a loaded machine; the demo itself takes seconds


def test_demo_serve_runs_the_daemon_until_ctrl_c(cli: CLI, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    env["COLUMNS"] = "200"
    stdout, stderr = tmp_path / "stdout.json", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "mailcrm", "demo", "--serve", "--dir", "crm-demo", "--json"]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        _wait_for("the serving line", lambda: "serving:" in _read(stderr), process, stderr)
        report = json.loads(_read(stdout))  # complete before the serving line is printed
        serving = report["serving"]
        imap, smtp, example = serving["imap"], serving["smtp"], serving["example"]
        assert imap["host"] == smtp["host"] == "127.0.0.1"
        assert report["sync"]["server"]["running"] is report["sending"]["server"]["running"] is True
        _wait_for("the walk-through", lambda: example["timeline"] in _read(stderr), process, stderr)
        config = str(tmp_path / "crm-demo" / "mailcrm.yaml")

        # A mail server delivers a new email from a known demo customer into a salesperson's INBOX.
        people = cli("--config", config, "customers", "list", "--json").json()
        sender = next(
            p["email"] for p in people if p["status"] == "customer" and p["email"] != example["from"]
        )
        login = imap["logins"][0]
        subject = f"New order enquiry {make_msgid(domain='test.example')}"
        _append(imap["host"], imap["port"], login["username"], login["password"], sender, subject)
        _wait_for(
            f"{subject!r} on the timeline of {sender}",
            lambda: subject in _subjects(cli, config, sender),
            process,
            stderr,
        )

        # The command the walk-through prints works as printed (with this Python for python3).
        printed = shlex.split(example["deliver"])
        assert printed[0] == "python3" and example["deliver"] in _read(stderr)
        delivered = subprocess.run(
            [sys.executable, *printed[1:]], capture_output=True, text=True, timeout=WAIT_SECONDS, check=False
        )
        assert delivered.returncode == 0, delivered.stderr
        _wait_for(
            f"the walk-through's email on the timeline of {example['from']}",
            lambda: example["subject"] in _subjects(cli, config, example["from"]),
            process,
            stderr,
        )

        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=WAIT_SECONDS)
        assert code == 0, _read(stderr)
        assert "stopped the daemon, then the demo's mail servers" in _read(stderr)
        for server in (imap, smtp):
            with (
                pytest.raises(OSError),
                socket.create_connection((server["host"], server["port"]), timeout=2),
            ):
                pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _wait_for(what: str, done: Callable[[], bool], process: subprocess.Popen[bytes], stderr: Path) -> None:
    """Poll `done` until it holds; fail if the demo exits first or after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if process.poll() is not None:
            pytest.fail(f"mailcrm demo --serve exited ({process.returncode}) before {what}:\n{_read(stderr)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT_SECONDS:.0f} s:\n{_read(stderr)}")
        time.sleep(0.2)


def _append(host: str, port: int, username: str, password: str, sender: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = username
    message["Subject"] = subject
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain="test.example")
    message.set_content("Could you send me a quote for two more panels?")
    client = imaplib.IMAP4(host, port, timeout=WAIT_SECONDS)
    try:
        client.login(username, password)
        status, _ = client.append("INBOX", None, None, message.as_bytes())
        assert status == "OK"
    finally:
        client.logout()


def _subjects(cli: CLI, config: str, customer: str) -> set[str]:
    result = cli("--config", config, "timeline", customer, "--json")
    assert result.code == 0, result.stderr
    entries: list[dict[str, Any]] = result.json()
    return {entry.get("subject") or "" for entry in entries}
