"""Hostile inputs met from outside, one command each, as a new user or an attacker would
try them: a template that does not compile, a file that never ends, a device where a
file should be, control characters in a note. Each ends in one line naming the place,
never a traceback, a hang or memory exhaustion; where the store matters, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import CLI, MAILCRM, Store, cli_env, write_config, write_template

CONFIG = """\
database:
  url: {url}
defaults:
  timezone: Asia/Bangkok
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
rules_dir: rules
templates_dir: templates
"""

RULES = """\
rules:
  - name: thank-you
    when: {after: purchase, wait: 1d}
    template: thank_you
"""


@pytest.fixture
def store(store_url: Store, tmp_path: Path) -> str:
    """A config in `tmp_path/config` whose database is an empty SQLite file or PostgreSQL schema."""
    _write_config(tmp_path, store_url.url)
    return store_url.kind


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    """A SQLite store, for what does not depend on the store."""
    _write_config(tmp_path, "sqlite:///crm.db")
    return tmp_path


def _write_config(tmp_path: Path, url: str) -> None:
    write_config(tmp_path, CONFIG.format(url=url))
    (tmp_path / "config" / "rules").mkdir()
    (tmp_path / "config" / "rules" / "alice.yaml").write_text(RULES, encoding="utf-8")
    write_template(
        tmp_path / "config" / "templates", "thank_you", "Thanks!\n\n{{ unsubscribe_url }}\n", "Thank you"
    )


def test_rules_check_names_a_template_that_does_not_compile(cli: CLI, configured: Path) -> None:
    """A rule's template with a Jinja2 syntax error is an error at file:line, not a traceback."""
    body = configured / "config" / "templates" / "thank_you" / "en.txt.j2"
    body.write_text("Thanks!\n{% for x in y %}never closed\n", encoding="utf-8")
    result = cli("--config", "config/mailcrm.yaml", "rules", "check")
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "templates/thank_you/en.txt.j2:2: syntax error" in result.stderr
    data = cli("--config", "config/mailcrm.yaml", "rules", "check", "--json").json()
    assert [(error["file"], error["line"]) for error in data["errors"]] == [
        ("templates/thank_you/en.txt.j2", 2)
    ]


def _run_with_memory_cap(cwd: Path, *args: str, cap: int = 1 << 30) -> subprocess.CompletedProcess[str]:
    """`mailcrm ARGS` with its address space capped, so reading a huge file whole fails
    fast with MemoryError instead of filling the machine's memory."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run(
        [*MAILCRM, *args],
        cwd=cwd,
        env=cli_env(),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_csv_line_without_end_is_refused_before_it_fills_memory(
    cli: CLI, store: str, tmp_path: Path
) -> None:
    """A CSV whose third line is 2 GB of NULs (a sparse file): the rows before it go in,
    and the line is named with the limit, in bounded memory."""
    path = tmp_path / "sparse.csv"
    path.write_bytes(b"name,email\nAnn Lee,ann@example.org\n")
    with path.open("r+b") as handle:
        handle.truncate(2 << 30)
    result = _run_with_memory_cap(
        tmp_path, "--config", "config/mailcrm.yaml", "customers", "import", "sparse.csv"
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "sparse.csv: line 3 runs past 33,554,432 bytes without a line break" in result.stderr
    listed = cli("--config", "config/mailcrm.yaml", "customers", "list", "--json").json()
    assert [row["email"] for row in listed] == ["ann@example.org"]


def test_csv_import_names_what_the_path_really_is(cli: CLI, configured: Path) -> None:
    """A directory, a device or a UTF-16 file is named as such, not as a missing file."""
    (configured / "folder.csv").mkdir()
    (configured / "u16.csv").write_text("name,email\nAnn,ann@example.org\n", encoding="utf-16")
    cases = {
        "folder.csv": "folder.csv: a directory, not a CSV file",
        "/dev/zero": "/dev/zero: a device, not a CSV file",
        "u16.csv": "u16.csv: the file is UTF-16 text, not UTF-8",
        "missing.csv": "missing.csv: no such file",
    }
    for path, expected in cases.items():
        result = cli("--config", "config/mailcrm.yaml", "customers", "import", path)
        assert result.code == 1
        assert expected in result.stderr, (path, result.stderr)


def test_a_config_or_secret_that_is_no_regular_file_is_refused_at_once(cli: CLI, tmp_path: Path) -> None:
    """`--config /dev/zero` once read until memory ran out; a FIFO as config or password
    file waited forever for a writer. Each is one line saying what the path is."""
    os.mkfifo(tmp_path / "fifo.yaml")
    secret = tmp_path / "secret"
    os.mkfifo(secret)
    secret.chmod(0o600)
    (tmp_path / "mailcrm.yaml").write_text(
        "salespeople:\n  - name: Ann\n    email: ann@acme.example\n"
        "    smtp: {host: 127.0.0.1, security: plain, username: ann, password_file: secret}\n",
        encoding="utf-8",
    )
    device = _run_with_memory_cap(tmp_path, "--config", "/dev/zero", "config", "check")
    assert device.returncode == 1
    assert "/dev/zero: cannot read file: a device, not a regular file" in device.stderr
    fifo = cli("--config", "fifo.yaml", "config", "check")
    assert fifo.code == 1
    assert "fifo.yaml: cannot read file: a FIFO, not a regular file" in fifo.stderr
    password = cli("--config", "mailcrm.yaml", "config", "check", "--secrets")
    assert password.code == 1
    assert "password file secret is a FIFO, not a regular file" in password.stderr
    (tmp_path / "mailcrm.yaml").write_text(
        (tmp_path / "mailcrm.yaml")
        .read_text(encoding="utf-8")
        .replace("password_file: secret", "password_file: /etc"),
        encoding="utf-8",
    )
    folder = cli("--config", "mailcrm.yaml", "config", "check", "--secrets")
    assert folder.code == 1
    assert "password file /etc is a directory, not a regular file" in folder.stderr
    assert "chmod" not in folder.stderr


def test_notes_and_purchases_refuse_control_characters_on_both_stores(cli: CLI, store: str) -> None:
    """A NUL read from stdin into `notes add -` was stored on SQLite and made PostgreSQL
    refuse the whole change; an ESC in a note, product or order reference was stored.
    Now each is refused naming the field and the character, identically on both stores."""
    config = ("--config", "config/mailcrm.yaml")
    assert cli(*config, "customers", "add", "--name", "Ann Lee", "-e", "ann@example.org").code == 0
    nul = cli(*config, "notes", "add", "ann@example.org", "-", stdin="before\x00after")
    assert nul.code == 1
    assert "note: contains a control character, U+0000 (NUL), at character 7" in nul.stderr
    esc = cli(*config, "notes", "add", "ann@example.org", "\x1b]0;owned\x07")
    assert esc.code == 1 and "note: contains a control character, U+001B (ESC)" in esc.stderr
    author = cli(*config, "notes", "add", "1", "hello", "--author", "ev\x1bil")
    assert author.code == 1 and "author: contains a control character" in author.stderr
    purchase = ("purchases", "add", "1", "--amount", "10", "--currency", "THB", "--date", "2026-01-02")
    product = cli(*config, *purchase, "--product", "Inverter\x1b[31m")
    assert product.code == 1 and "product: contains a control character, U+001B (ESC)" in product.stderr
    invisible = cli(*config, *purchase, "--product", "\u200b\u200b")
    assert invisible.code == 1 and "product: has no visible character" in invisible.stderr
    ref = cli(*config, *purchase, "--product", "Inverter", "--order-ref", "A\x9b1m")
    assert ref.code == 1 and "order_ref: contains a control character, U+009B (CSI)" in ref.stderr
    kept = cli(*config, "notes", "add", "1", "-", stdin="line one\n\tline two\n")
    assert kept.code == 0, kept.stderr
    timeline = cli(*config, "timeline", "1", "--json").json()
    assert [(event["kind"], event["payload"]["text"]) for event in timeline] == [
        ("note", "line one\n\tline two")
    ]


def test_a_birthday_outside_the_calendar_range_is_refused(cli: CLI, configured: Path) -> None:
    """`--birthday 0001-01-01` was stored and planned a birthday card "for year 1"; now it is
    a usage error naming the option, and a refused row in a CSV, like a purchase date."""
    config = ("--config", "config/mailcrm.yaml")
    for value in ("0001-01-01", "9999-12-31"):
        added = cli(
            *config, "customers", "add", "--name", "Ann", "-e", "ann@example.org", "--birthday", value
        )
        assert added.code == 2, added.stderr
        assert "--birthday" in added.stderr and "1900-01-01..2200-12-31" in added.stderr
    assert cli(*config, "customers", "add", "--name", "Ann", "-e", "ann@example.org").code == 0
    assert cli(*config, "customers", "edit", "1", "--birthday", "0001-01-01").code == 2
    (configured / "b.csv").write_text("name,email,birthday\nBo,bo@example.org,9999-12-31\n", encoding="utf-8")
    imported = cli(*config, "customers", "import", "b.csv", "--json")
    assert imported.code == 1
    assert imported.json()["errors"][0]["reason"].startswith("birthday: '9999-12-31' is outside 1900-01-01")
    assert cli(*config, "customers", "edit", "1", "--birthday", "1980-02-29").code == 0
    shown = cli(*config, "customers", "show", "1", "--json").json()
    assert shown["birthday"] == "1980-02-29"


def test_a_right_to_left_override_in_a_name_never_reaches_the_terminal(cli: CLI, configured: Path) -> None:
    """U+202E in a lead's display name reversed the rest of the line in `customers list`
    (the columns after it included); tables and messages show it as U+FFFD, JSON keeps
    the data as stored, and right-to-left text without overrides prints as written."""
    config = ("--config", "config/mailcrm.yaml")
    added = cli(*config, "customers", "add", "--name", "Ann \u202egnp.exe", "-e", "ann@example.org")
    assert added.code == 0, added.stderr
    assert "\u202e" not in added.stdout + added.stderr
    assert (
        cli(
            *config, "customers", "add", "--name", "\u0645\u0631\u06cc\u0645", "-e", "maryam@example.org"
        ).code
        == 0
    )
    listed = cli(*config, "customers", "list")
    assert "\u202e" not in listed.stdout and "Ann \ufffdgnp.exe" in listed.stdout
    assert "\u0645\u0631\u06cc\u0645" in listed.stdout
    shown = cli(*config, "customers", "show", "1")
    assert "\u202e" not in shown.stdout
    assert cli(*config, "customers", "show", "1", "--json").json()["name"] == "Ann \u202egnp.exe"


def test_ctrl_c_during_an_import_says_so_and_a_rerun_finishes(cli: CLI, configured: Path) -> None:
    """Ctrl-C during a CSV import ended with exit 130 and no word; now one line says the
    committed batches stay and re-running finishes, and the re-run leaves every row once."""
    rows = 60_000
    lines = (f"Person {n},p{n}@example.org,t{n % 7}\n" for n in range(rows))
    (configured / "big.csv").write_text("name,email,tags\n" + "".join(lines), encoding="utf-8")
    assert cli("--config", "config/mailcrm.yaml", "db", "upgrade").code == 0
    env = cli_env()
    command = [
        *MAILCRM,
        "--config",
        "config/mailcrm.yaml",
        "customers",
        "import",
        "big.csv",
    ]
    process = subprocess.Popen(command, cwd=configured, env=env, stderr=subprocess.PIPE, text=True)
    database = configured / "config" / "crm.db"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None and _customers(database) == 0:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the import finished before it could be interrupted")
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "interrupted: what was already committed is kept" in stderr
    again = cli("--config", "config/mailcrm.yaml", "customers", "import", "big.csv", "--json")
    assert again.code == 0, again.stderr
    assert _customers(database) == rows
    with sqlite3.connect(database) as connection:
        orphans = connection.execute(
            "SELECT count(*) FROM customer c WHERE NOT EXISTS "
            "(SELECT 1 FROM email_address e WHERE e.customer_id = c.id)"
        ).fetchone()[0]
    assert orphans == 0


def _customers(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM customer").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_a_lead_from_mail_with_an_invisible_display_name_is_named_by_its_address(
    cli: CLI, configured: Path
) -> None:
    """Any sender chooses the name a lead gets: one of zero-width spaces only was stored as
    a name nobody can see or re-import; the lead is named from the address instead."""
    message = (
        "From a@b Mon Jan  1 00:00:00 2024\n"
        'From: "\u200b\u200b\u2066" <zoe.walker@hostile.example>\n'
        "To: alice@acme.example\nSubject: hello\nMessage-ID: <zw1@hostile.example>\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\n\nhello\n"
    )
    (configured / "in.mbox").write_text(message, encoding="utf-8")
    config = ("--config", "config/mailcrm.yaml")
    imported = cli(*config, "import", "mbox", "in.mbox", "--mailbox", "alice@acme.example")
    assert imported.code == 0, imported.stderr
    leads = cli(*config, "customers", "list", "--json").json()
    assert [(lead["name"], lead["email"]) for lead in leads] == [("Zoe Walker", "zoe.walker@hostile.example")]
