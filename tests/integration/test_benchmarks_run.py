"""Every script in benchmarks/ still runs and prints its figures.

Benchmarks are not run by CI, so one can break unnoticed (send_smtp.py once seeded
purchases without a column the schema had come to require, and failed for weeks). Each
runs here at its smallest meaningful size, as a user runs it (a subprocess from the
project folder), and must exit 0 and print the JSON keys its README line promises. The
figures themselves are not judged: speed is for the benchmarks, not for tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from servers.dovecot import dovecot_available

ROOT = Path(__file__).parents[2]


def _programs(*names: str) -> str | None:
    """Why the benchmark cannot run here (a peer program missing), or None."""
    sbin = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/usr/lib/postfix/sbin"))
    missing = [name for name in names if shutil.which(name, path=sbin) is None]
    return f"{', '.join(missing)} not found (see .ci/install-services)" if missing else None


def _none() -> str | None:
    return None


def _smtp_tools() -> str | None:
    return _programs("smtp-sink", "smtp-source")


def _imap_tools() -> str | None:
    return dovecot_available() or _programs("mbsync")


# script, smallest meaningful arguments, keys its JSON must hold, why it cannot run here
CASES: list[tuple[str, list[str], set[str], Callable[[], str | None]]] = [
    ("bounce_corpus.py", ["--repeat", "1"], {"samples", "recognised_rate", "messages_per_second"}, _none),
    (
        "import_customers.py",
        ["--customers", "200", "--purchases", "200"],
        {"customers", "purchases", "sqlite", "sqlite3_shell", "ratio_vs_sqlite3"},
        _none,
    ),
    ("import_mail_memory.py", ["--count", "1", "--size-mb", "1"], {"messages", "bar_mb", "runs"}, _none),
    (
        "parse_messages.py",
        ["--count", "50", "--repeat", "1"],
        {"messages", "rates", "speedup_vs_stdlib"},
        _none,
    ),
    (
        "plan_anniversary.py",
        ["--customers", "200", "--skip-postgres"],
        {"customers", "sqlite", "ok"},
        _none,
    ),
    ("render_build.py", ["--count", "50", "--repeat", "1"], {"count", "rates", "build_vs_stdlib"}, _none),
    (
        "send_smtp.py",
        ["--count", "50", "--skip-planning", "--no-single"],
        {"sender", "smtp_source", "ratio"},
        _smtp_tools,
    ),
    (
        "sync_imap.py",
        ["--messages", "20", "--customers", "10", "--idle", "1", "--rounds", "1", "--skip-big"],
        {"ratio", "idle", "verdicts"},
        _imap_tools,
    ),
]


def test_every_benchmark_script_is_covered() -> None:
    scripts = {path.name for path in (ROOT / "benchmarks").glob("*.py") if "__main__" in path.read_text()}
    assert scripts == {case[0] for case in CASES}


@pytest.mark.parametrize(("script", "args", "keys", "unavailable"), CASES, ids=[case[0] for case in CASES])
def test_benchmark_runs_and_prints_its_figures(
    require: Callable[[str | None], None],
    script: str,
    args: list[str],
    keys: set[str],
    unavailable: Callable[[], str | None],
) -> None:
    require(unavailable())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert isinstance(figures, dict)
    assert keys <= figures.keys(), sorted(figures)
