"""Run the `mailcrm` command as a user would, and the files a user's project starts from.

`cli` runs the command line in this test process: the same entry point (`mailcrm.cli.main`)
with its own stdin, stdout and stderr, working folder and environment, the exit code taken
from `SystemExit` as the shell would see it. Starting a Python process per command cost
most of this folder's time; what only a real process shows (the console script's exit
status, signals, Ctrl-C, a killed parent) uses `cli_process`, `MAILCRM` and `cli_env`.

Each in-process run leaves the process as it found it: environment, working folder,
standard streams and the `mailcrm` logger (which `--log-level` reconfigures) are put back,
so no test sees another's state (tests/acceptance/test_in_process_cli.py checks it).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mailcrm.cli import main, output

# The real console script, as `python -m mailcrm` runs it.
MAILCRM = (sys.executable, "-m", "mailcrm")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


CLI = Callable[..., Result]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any `MAILCRM_*` setting, 200 columns wide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    env["COLUMNS"] = "200"
    return {**env, **(extra or {})}


def run_in_process(
    cwd: Path, *args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None
) -> Result:
    """`mailcrm ARGS` through `mailcrm.cli.main` in this process; see the module docstring."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    logger = logging.getLogger("mailcrm")
    saved_logger = (list(logger.handlers), logger.level, logger.propagate)
    out, err = io.BytesIO(), io.BytesIO()
    code = 0
    # rich fixes a console's width when the console is made (at import, perhaps by an
    # earlier test without COLUMNS): give both the width a fresh process would read.
    consoles = (output.console, output.err_console)
    saved_widths = [console.width for console in consoles]
    try:
        for console in consoles:
            console.width = int(cli_env(extra_env)["COLUMNS"])
        os.environ.clear()
        os.environ.update(cli_env(extra_env))
        os.chdir(cwd)
        sys.stdin = io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
        try:
            main(list(args))
        except SystemExit as exc:
            code = _exit_status(exc.code)
        except Exception:
            # What the interpreter does with an exception nobody caught.
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for console, width in zip(consoles, saved_widths, strict=True):
            console.width = width
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        logger.handlers[:] = saved_logger[0]
        logger.setLevel(saved_logger[1])
        logger.propagate = saved_logger[2]
    return Result(code, stdout.decode("utf-8"), stderr.decode("utf-8", "replace"))


def _exit_status(code: object) -> int:
    """The status `sys.exit(code)` gives the shell: None is 0, a message is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_process(
    cwd: Path, *args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None
) -> Result:
    """`mailcrm ARGS` as a real process through its entry point, with a 60 s bound."""
    completed = subprocess.run(
        [*MAILCRM, *args],
        cwd=cwd,
        env=cli_env(extra_env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """`cli("customers", "list", "--json")` runs mailcrm in `tmp_path`, in this process."""

    def run(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None) -> Result:
        return run_in_process(tmp_path, *args, stdin=stdin, extra_env=extra_env)

    return run


@pytest.fixture
def cli_process(tmp_path: Path) -> CLI:
    """Like `cli`, but a real `python -m mailcrm` process: for what crosses the process boundary."""

    def run(*args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None) -> Result:
        return run_process(tmp_path, *args, stdin=stdin, extra_env=extra_env)

    return run


# --- a user's project ---------------------------------------------------------------------


def write_config(folder: Path, config: str) -> Path:
    """`folder/config/mailcrm.yaml` holding `config` (folders created); returns `folder`."""
    (folder / "config").mkdir(parents=True, exist_ok=True)
    (folder / "config" / "mailcrm.yaml").write_text(config, encoding="utf-8")
    return folder


def write_template(
    folder: Path, name: str, body: str, subject: str = "Hi", languages: tuple[str, ...] = ("en",)
) -> None:
    """Template `name` in the templates folder `folder`: a subject and a text part per language."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    for language in languages:
        (folder / name / f"{language}.subject.j2").write_text(subject, encoding="utf-8")
        (folder / name / f"{language}.txt.j2").write_text(body, encoding="utf-8")


@dataclass(frozen=True)
class Store:
    """The database a parametrized test runs on: `kind` is "sqlite" or "postgres"."""

    kind: str
    url: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty SQLite file (`crm.db`, relative to the project) or PostgreSQL schema."""
    if request.param == "sqlite":
        yield Store("sqlite", "sqlite:///crm.db")
        return
    url = str(request.getfixturevalue("postgres_url"))
    drop_schema(url)
    yield Store("postgres", url)
    drop_schema(url)


def drop_schema(url: str) -> None:
    """Empty a PostgreSQL database: its public schema dropped and made again."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
