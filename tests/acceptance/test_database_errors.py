"""A database that cannot be used is one line naming it (password masked) and saying
what to do: never a traceback, never the password, never an empty database made where
a read-only command looked for one."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from mailcrm.store import migrate

from .conftest import CLI, Result

PASSWORD = "Sup3r-s3cret-pw"


def _configure(tmp_path: Path, url: str | None = None) -> None:
    (tmp_path / "config").mkdir(exist_ok=True)
    text = "salespeople:\n  - name: Alice\n    email: alice@acme.example\n"
    if url is not None:
        text += f"database:\n  url: {url}\n"
    (tmp_path / "config" / "mailcrm.yaml").write_text(text, encoding="utf-8")


def _one_line_error(result: Result) -> str:
    """The error, checked to be one line with exit 1, no traceback and no password."""
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgres_url(postgres_url: str, **changes: str) -> str:
    url = make_url(postgres_url).set(password=PASSWORD)
    return url.set(**changes).render_as_string(hide_password=False)  # type: ignore[arg-type]


def test_a_closed_port_says_connection_refused_and_to_start_the_server(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path, f"postgresql://crm:{PASSWORD}@127.0.0.1:{_closed_port()}/crm")
    line = _one_line_error(cli("customers", "list"))
    assert "crm:***@127.0.0.1" in line
    assert "connection refused" in line and "start the PostgreSQL server" in line


def test_an_unknown_database_says_to_create_it(cli: CLI, tmp_path: Path, postgres_url: str) -> None:
    _configure(tmp_path, _postgres_url(postgres_url, database="mailcrm_nowhere"))
    line = _one_line_error(cli("customers", "list"))
    assert ":***@" in line
    assert 'database "mailcrm_nowhere" does not exist' in line and "createdb mailcrm_nowhere" in line


def test_an_unknown_role_says_to_check_the_user(cli: CLI, tmp_path: Path, postgres_url: str) -> None:
    _configure(tmp_path, _postgres_url(postgres_url, username="mailcrm_ghost"))
    line = _one_line_error(cli("db", "upgrade"))
    assert "mailcrm_ghost:***@" in line
    assert 'role "mailcrm_ghost" does not exist' in line and "check the user in database.url" in line


def test_a_text_file_is_not_a_database(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("shopping list\n" * 200, encoding="utf-8")
    _configure(tmp_path, f"sqlite:///{tmp_path}/notes.db")
    line = _one_line_error(cli("customers", "list"))
    assert f"{tmp_path}/notes.db" in line and "not an SQLite database" in line
    assert (tmp_path / "notes.db").read_text(encoding="utf-8").startswith("shopping list")


def test_a_directory_is_not_a_database(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "data.db").mkdir()
    _configure(tmp_path, f"sqlite:///{tmp_path}/data.db")
    line = _one_line_error(cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example"))
    assert f"{tmp_path}/data.db" in line and "is a directory" in line


@contextlib.contextmanager
def _read_only(*paths: Path) -> Iterator[None]:
    """Make paths unwritable, even for root (the immutable attribute), where supported."""
    import os

    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file read-only for root here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True, check=False)


def test_a_read_only_database_says_to_grant_write_access(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path, f"sqlite:///{tmp_path}/data/mailcrm.db")
    assert cli("db", "upgrade").code == 0
    database = tmp_path / "data" / "mailcrm.db"
    with _read_only(database):
        line = _one_line_error(cli("customers", "list"))
    assert str(database) in line and "read-only" in line and "write access" in line


@pytest.mark.parametrize(
    "command",
    [
        ("customers", "list"),
        ("customers", "show", "1"),
        ("timeline", "1"),
        ("db", "status"),
        ("outbox", "list"),
        ("mailboxes", "status"),
        ("suppress", "list"),
        ("customers", "export", "-o", "out.csv"),
        ("plan", "--days", "1"),
    ],
)
def test_read_only_commands_do_not_create_a_missing_database(
    cli: CLI, tmp_path: Path, command: tuple[str, ...]
) -> None:
    _configure(tmp_path, "sqlite:///../data/crm/mailcrm.db")
    line = _one_line_error(cli(*command))
    assert f"no database at {tmp_path}/data/crm/mailcrm.db" in line and "mailcrm db upgrade" in line
    assert not (tmp_path / "data").exists()


def test_commands_that_create_still_create_a_missing_database(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path, "sqlite:///../data/crm/mailcrm.db")
    added = cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example")
    assert added.code == 0, added.stderr
    assert (tmp_path / "data" / "crm" / "mailcrm.db").is_file()
    assert cli("customers", "list", "--json").json()[0]["name"] == "Wang Fang"


def _set_version(database: Path, version: str | None) -> None:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        if version is None:
            connection.execute("DROP TABLE alembic_version")
        else:
            connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
        connection.commit()


def test_a_database_from_a_newer_mailcrm_says_to_upgrade_mailcrm(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    assert cli("db", "upgrade").code == 0
    _set_version(tmp_path / "config" / "mailcrm.db", "0099")
    expected = f"schema 0099, this mailcrm knows up to {migrate.head_revision()}: upgrade mailcrm"
    status = cli("db", "status", "--json")
    assert status.code == 1 and status.json()["state"] == "newer"
    assert expected in status.json()["problem"]
    for command in (("customers", "list"), ("db", "upgrade")):
        assert expected in _one_line_error(cli(*command))


def test_tables_without_a_schema_version_are_not_taken_for_an_empty_database(
    cli: CLI, tmp_path: Path
) -> None:
    _configure(tmp_path)
    assert cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example").code == 0
    _set_version(tmp_path / "config" / "mailcrm.db", None)
    status = cli("db", "status")
    assert status.code == 1 and "tables but no schema version: not a mailcrm database" in status.stderr
    for command in (("customers", "list"), ("db", "upgrade")):
        assert "tables but no schema version" in _one_line_error(cli(*command))


def test_db_status_on_an_empty_database_says_to_run_db_upgrade(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    (tmp_path / "config" / "mailcrm.db").touch()
    status = cli("db", "status", "--json")
    assert status.code == 1 and status.json()["state"] == "empty"
    assert "empty: run `mailcrm db upgrade`" in status.json()["problem"]
    assert cli("db", "upgrade").code == 0
    assert cli("db", "status").code == 0
