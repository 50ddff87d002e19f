"""The in-process `cli` fixture is only worth having if it answers as the real command does
and leaves nothing behind: the same exit code and output as `python -m mailcrm`, and the
environment, working folder, standard streams and `mailcrm` logger of the test process as
they were."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from .conftest import CLI, write_config

CONFIG = """\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
"""


@pytest.mark.parametrize(
    "args",
    [
        ("customers", "list", "--json"),
        ("customers", "add", "--name", "X", "-e", "not-an-address"),
        ("customers", "add", "--name", "X"),
    ],
)
def test_in_process_answers_as_the_real_process(
    cli: CLI, cli_process: CLI, tmp_path: Path, args: tuple[str, ...]
) -> None:
    write_config(tmp_path, CONFIG)
    real = cli_process(*args)
    (tmp_path / "config" / "crm.db").unlink(missing_ok=True)
    here = cli(*args)
    assert (here.code, here.stdout, here.stderr) == (real.code, real.stdout, real.stderr)


def test_in_process_runs_leave_no_state_behind(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, CONFIG)
    monkeypatch.setenv("MAILCRM_LOG_LEVEL", "error")  # the runs must not see it, and keep it
    logger = logging.getLogger("mailcrm")
    before = (dict(os.environ), os.getcwd(), sys.stdin, sys.stdout, sys.stderr)
    logger_before = (list(logger.handlers), logger.level, logger.propagate)

    debug = cli("--log-level", "debug", "--log-format", "json", "db", "upgrade", extra_env={"LEAK": "1"})
    assert debug.code == 0, debug.stderr
    failed = cli("customers", "show", "nobody@example.org")
    assert failed.code == 1

    assert (dict(os.environ), os.getcwd(), sys.stdin, sys.stdout, sys.stderr) == before
    assert (list(logger.handlers), logger.level, logger.propagate) == logger_before
