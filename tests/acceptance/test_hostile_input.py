"""Hostile or broken customer text, as a user meets it at the command line.

Names and fields that look like spreadsheet formulas, carry control characters or
terminal escape sequences, search text with LIKE wildcards, oversized CSV cells: each
gets a clear answer naming the place, the good data goes in, and nothing is replayed
to the terminal. Where the store matters, each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .conftest import CLI, MAILCRM, Store, cli_env, write_config

CONFIG = """\
database:
  url: {url}
defaults:
  timezone: Asia/Bangkok
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
"""


@pytest.fixture
def store(store_url: Store, tmp_path: Path) -> str:
    """A config in `tmp_path` whose database is an empty SQLite file or PostgreSQL schema."""
    write_config(tmp_path, CONFIG.format(url=store_url.url))
    return store_url.kind


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    """A SQLite store, for what does not depend on the store."""
    return write_config(tmp_path, CONFIG.format(url="sqlite:///crm.db"))


def names(cli: CLI, *args: str) -> list[str]:
    result = cli("customers", "list", *args, "--json")
    assert result.code == 0, result.stderr
    return sorted(c["name"] for c in result.json())


# --- search -------------------------------------------------------------------------------


def test_search_text_is_literal_not_a_like_pattern(cli: CLI, tmp_path: Path, store: str) -> None:
    """`customers list %` and `_` find the names with those characters, not everyone."""
    (tmp_path / "people.csv").write_text(
        "name,email\n100% Solar,sales@solar.example\nsnake_case Trading,info@snake.example\n"
        "Back\\slash Ltd,bs@back.example\nA/B Imports,ab@imports.example\n"
        "Plain Person,plain@person.example\n",
        encoding="utf-8",
    )
    assert cli("customers", "import", "people.csv").code == 0
    assert names(cli, "%") == ["100% Solar"]
    assert names(cli, "_") == ["snake_case Trading"]
    assert names(cli, "\\") == ["Back\\slash Ltd"]
    assert names(cli, "/") == ["A/B Imports"]
    assert names(cli, "E_C") == ["snake_case Trading"]
    assert cli("customers", "list", "%%").stderr.strip() == "no customers match"


# --- formula injection ----------------------------------------------------------------------

EVIL = '=HYPERLINK("http://evil.example","x")'
MBOX = """\
From evil@evil.example Mon Jan  5 10:00:00 2026
From: "=HYPERLINK(\\"http://evil.example\\",\\"x\\")" <evil@evil.example>
To: Alice Morgan <alice@acme.example>
Subject: quote please
Date: Mon, 05 Jan 2026 10:00:00 +0000
Message-ID: <evil-1@evil.example>

Could you send a quote?
"""


def test_export_escapes_formulas_and_import_undoes_it(cli: CLI, tmp_path: Path, store: str) -> None:
    """A lead named by an outside sender's From display name exports as text, not a
    formula; names, phones and fields starting with = + - @ round-trip literally."""
    (tmp_path / "mail.mbox").write_text(MBOX, encoding="utf-8")
    synced = cli("import", "mbox", "mail.mbox", "--mailbox", "alice@acme.example", "--json")
    assert synced.code == 0 and synced.json()["leads"] == 1, synced.stdout + synced.stderr
    added = cli(
        "customers", "add", "--name", "-Jon-", "-e", "jon@example.org", "--phone", "+66 81 234 5678",
        "--set", "note=@home", "--set", "total==SUM(A1)",
    )  # fmt: skip
    assert added.code == 0, added.stderr

    exported = cli("customers", "export", "-o", "out.csv")
    assert exported.code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert [(r["name"], r["phone"], r["custom.note"], r["custom.total"]) for r in rows] == [
        ("'" + EVIL, "", "", ""),
        ("'-Jon-", "'+66 81 234 5678", "'@home", "'=SUM(A1)"),
    ]
    as_json = cli("customers", "export", "--json").stdout.splitlines()
    assert EVIL.replace('"', '\\"') in as_json[0] and '"-Jon-"' in as_json[1]  # JSON is data: as stored

    before = cli("customers", "list", "--json").json()
    again = cli("customers", "import", "out.csv", "--json")
    assert again.code == 0, again.stdout + again.stderr
    assert (again.json()["unchanged"], again.json()["updated"], again.json()["created"]) == (2, 0, 0)
    after = cli("customers", "list", "--json").json()
    assert after == before
    assert [(c["name"], c["phone"], c["custom"]) for c in after] == [
        (EVIL, None, {}),
        ("-Jon-", "+66 81 234 5678", {"note": "@home", "total": "=SUM(A1)"}),
    ]


# --- control characters -------------------------------------------------------------------


def test_control_characters_are_refused_with_row_and_field(cli: CLI, tmp_path: Path, store: str) -> None:
    """One NUL cell refuses its row, named by line and field, on both stores; the other
    rows go in. The command line refuses the same text, and errors never replay ESC."""
    (tmp_path / "people.csv").write_text(
        "name,email,company,[red]Notes[/red]\nAnn,ann@example.org,Acme\nNul\x00Nul,nul@example.org,\n"
        "Bo,bo@example.org,\x1b[2J\nCy,cy@example.org,\n",
        encoding="utf-8",
    )
    imported = cli("customers", "import", "people.csv")
    report = imported.stdout + imported.stderr
    assert imported.code == 1
    assert "2 created" in report and "2 rows refused" in report
    assert "name: contains a control character, U+0000 (NUL), at character 4" in report
    assert "company: contains a control character, U+001B (ESC), at character 1" in report
    assert "ignored columns: [red]Notes[/red]" in imported.stderr  # a header is text, not markup
    refused_lines = [line.split("│")[1].strip() for line in report.splitlines() if "control" in line]
    assert refused_lines == ["3", "4"]
    assert names(cli) == ["Ann", "Cy"]

    added = cli("customers", "add", "--name", "\x1b]0;pwned\x07Eve", "-e", "eve@example.org")
    assert added.code == 1
    assert "name: contains a control character, U+001B (ESC), at character 1" in added.stderr
    blank = cli("customers", "add", "--name", "\u200b\u200f", "-e", "eve@example.org")
    assert blank.code == 1 and "name: has no visible character" in blank.stderr
    for result in (imported, added, blank):
        assert "\x1b" not in result.stdout + result.stderr and "Traceback" not in result.stderr


# --- terminal output ----------------------------------------------------------------------

HOSTILE = "Evil\x1b]0;pwned\x07\x1b[2J [bold red]x[/] \x9b31m"


def test_stored_text_never_replays_escape_sequences(cli: CLI, tmp_path: Path, configured: Path) -> None:
    """A name and a note stored before names and notes were checked print with ESC as a
    visible symbol and their markup-like brackets as written, in lists, details and
    timelines (today both are refused at the door: see the control-character tests)."""
    assert cli("customers", "add", "--name", "Placeholder", "-e", "evil@example.org").code == 0
    assert cli("notes", "add", "1", "call back tomorrow").code == 0
    with sqlite3.connect(configured / "config" / "crm.db") as connection:
        connection.execute("UPDATE customer SET name = ? WHERE id = 1", (HOSTILE,))
        connection.execute("UPDATE note SET text = ? WHERE customer_id = 1", ("call back \x1b[31mtomorrow",))

    for args in (
        ("customers", "list"),
        ("customers", "show", "1"),
        ("timeline", "1"),
        ("customers", "list", "evil"),
    ):
        shown = cli(*args)
        assert shown.code == 0, shown.stderr
        output = shown.stdout + shown.stderr
        assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output, args
        assert "\u241b]0;pwned" in output and "[bold red]x[/]" in output, args
    assert "call back \u241b[31mtomorrow" in cli("timeline", "1").stdout
    assert cli("customers", "show", "1", "--json").json()["name"] == HOSTILE  # JSON keeps the data


# --- the import's worker process ----------------------------------------------------------


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _other_sessions(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    engine.dispose()
    return int(count or 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_import_worker_dies_with_a_killed_parent(cli: CLI, tmp_path: Path, store: str) -> None:
    """`kill -9` of `customers import` used to leave its reader process running for
    minutes, holding the database; now it is gone within seconds and the store is free."""
    rows = "".join(f"Person {n},person{n}@example.org,Company {n % 97}\n" for n in range(120_000))
    (tmp_path / "big.csv").write_text("name,email,company\n" + rows, encoding="utf-8")
    assert (tmp_path / "big.csv").stat().st_size > 4 << 20  # big enough for the worker process
    parent = subprocess.Popen(
        [*MAILCRM, "customers", "import", "big.csv"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not workers and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(parent.pid)
        assert workers, "the import never started its worker process"
        time.sleep(1.0)  # let it hand over a batch or two
        assert parent.poll() is None, "the import finished before it could be killed"
        parent.kill()
        parent.wait(timeout=10)
        killed_at = time.monotonic()
        while any(_alive(pid) for pid in workers) and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"worker {survivors} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert time.monotonic() - killed_at < 5
    if store == "postgres":
        url = (tmp_path / "config" / "mailcrm.yaml").read_text().split("url: ")[1].splitlines()[0]
        deadline = time.monotonic() + 10
        while _other_sessions(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _other_sessions(url) == 0, "the killed import's database session is still open"
    added = cli("customers", "add", "--name", "After", "-e", "after@example.org")
    assert added.code == 0, added.stderr
