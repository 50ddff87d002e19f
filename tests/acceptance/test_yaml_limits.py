"""Deeply nested YAML through the commands and the daemon: refused with file:line.

A rule or config file nested 900 levels deep crashed `rules check` and `config check`
with a RecursionError, and a running daemon logged a traceback without the file name,
then never reported the file again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import CLI

CONFIG = """\
database:
  url: sqlite:///crm.db
templates_dir: ../templates
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
planning:
  interval_seconds: 0.2
"""
GOOD_RULE = "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n"
FLOW_900 = "rules:\n  - name: deep\n    when: " + "[" * 900 + "]" * 900 + "\n"
# 900 levels in block style: a list holding a mapping on each line (two levels a line).
BLOCK_900 = "rules:\n" + "".join("  " * level + "- k:\n" for level in range(1, 450))
HINT = "flatten the file"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config, a thank_you template and one good rule file."""
    (tmp_path / "config" / "rules").mkdir(parents=True)
    (tmp_path / "config" / "mailcrm.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "config" / "rules" / "a.yaml").write_text(GOOD_RULE, encoding="utf-8")
    template = tmp_path / "templates" / "thank_you"
    template.mkdir(parents=True)
    (template / "en.subject.j2").write_text("Hello\n", encoding="utf-8")
    (template / "en.txt.j2").write_text("Hello {{ customer.first_name }}\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("text", "where"), [(FLOW_900, "3:72"), (BLOCK_900, "33:67")], ids=["flow", "block"])
def test_rules_check_names_a_deeply_nested_file(cli: CLI, project: Path, text: str, where: str) -> None:
    (project / "config" / "rules" / "deep.yaml").write_text(text, encoding="utf-8")
    result = cli("rules", "check")
    assert result.code == 1 and "Traceback" not in result.stderr
    assert f"config/rules/deep.yaml:{where}: nested deeper than 64 levels" in result.stderr
    assert HINT in result.stderr
    errors = cli("rules", "check", "--json").json()["errors"]
    assert [(e["file"].endswith("deep.yaml"), e["line"]) for e in errors] == [
        (True, int(where.split(":")[0]))
    ]


def test_config_check_names_a_deeply_nested_config(cli: CLI, project: Path) -> None:
    config = project / "config" / "mailcrm.yaml"
    nested = "".join("  " * level + "k:\n" for level in range(1, 900)) + "  " * 900 + "v: 1\n"
    config.write_text(CONFIG + "extra:\n" + nested, encoding="utf-8")
    result = cli("config", "check")
    assert result.code == 1 and "Traceback" not in result.stderr
    assert "config/mailcrm.yaml:73:129: nested deeper than 64 levels" in result.stderr, result.stderr
    assert HINT in result.stderr
    flow = CONFIG + "extra: " + "{a: " * 900 + "1" + "}" * 900 + "\n"
    config.write_text(flow, encoding="utf-8")
    again = cli("config", "check", "--json")
    assert again.code == 1 and "Traceback" not in again.stderr
    assert "config/mailcrm.yaml:9:260: nested deeper than 64 levels" in again.stderr


def _wait_for(log: Path, text: str, count: int, timeout: float = 30.0) -> str:
    """The daemon's log once `text` appears `count` times in it (bounded in time)."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = log.read_text(encoding="utf-8", errors="replace")
        if content.count(text) >= count:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen {count} time(s) in {timeout} s; log:\n{content}")


def _settle() -> None:
    """Let a file's modification time move past the previous one (coarse clocks)."""
    time.sleep(0.05)


def test_daemon_names_the_bad_file_on_every_reload_until_it_is_fixed(project: Path) -> None:
    rules = project / "config" / "rules"
    log = project / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailcrm", "--log-level", "info", "run"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        _wait_for(log, "planned 0 emails", 1)
        deep = rules / "deep.yaml"
        deep.write_text(FLOW_900, encoding="utf-8")
        _wait_for(log, "action=rules_invalid", 1)
        _settle()
        deep.write_text(BLOCK_900, encoding="utf-8")  # the second reload: still broken
        _wait_for(log, "action=rules_invalid", 2)
        _settle()
        deep.write_text(GOOD_RULE.replace("one", "two"), encoding="utf-8")
        content = _wait_for(log, "action=rules_fixed", 1)
        planned_after_fix = content.count("planned 0 emails")
        _wait_for(log, "planned 0 emails", planned_after_fix + 1)  # planning goes on
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    content = log.read_text(encoding="utf-8")
    assert process.returncode == 0, content
    assert "Traceback" not in content and "RecursionError" not in content
    errors = [line for line in content.splitlines() if " ERROR " in line]
    assert len(errors) == 2, content
    assert f"{deep}:3:72: nested deeper than 64 levels" in errors[0]
    assert f"{deep}:33:67: nested deeper than 64 levels" in errors[1]
    assert all("keeping the last good rules" in line for line in errors)
    fixed = [line for line in content.splitlines() if "action=rules_fixed" in line]
    assert len(fixed) == 1 and " INFO " in fixed[0] and "2 rule(s) loaded" in fixed[0]
