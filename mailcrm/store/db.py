"""Engine and transactions: SQLite (WAL, foreign keys, immediate write locks) or PostgreSQL.

The store is synchronous SQLAlchemy: one code path for the CLI and the daemon, which
runs store calls in a worker thread (`asyncio.to_thread`). SQLite's async drivers are
threads anyway, and bulk work (imports, planning) is fastest on the plain driver.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlmodel import Session

from mailcrm.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

_WRITE = "mailcrm_write"


def normalize_url(raw: str, base_dir: Path | None = None) -> URL:
    """Parse a database URL; `postgresql://` uses psycopg 3; a relative SQLite path is
    taken relative to `base_dir` (the config file's folder)."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"invalid database URL {raw!r}",
            hint="use sqlite:///path/to/mailcrm.db or postgresql://user@host:5432/dbname",
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and base_dir is not None:
            path = Path(database).expanduser()
            if not path.is_absolute():
                url = url.set(database=str((base_dir / path).resolve()))
    elif url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"unsupported database {url.get_backend_name()!r}",
            hint="mailcrm runs on SQLite (default) or PostgreSQL",
        )
    return url


BUSY_TIMEOUT_MS = 10_000
"""How long an SQLite writer waits for another one's lock before "database is locked"."""


def _install_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA cache_size=-16384")  # 16 MiB: the 2 MiB default slows bulk writes
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A write transaction takes the lock up front, so it waits (busy_timeout)
        # instead of failing with "database is locked" when it later upgrades.
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _hint(exc: OperationalError) -> str:
    """What to do about an operational error, by its kind."""
    text = str(exc.orig).lower()
    if "full" in text or "no space" in text:
        return (
            "free space where the database lives; the transaction was rolled back, and "
            "the next run continues from the last commit"
        )
    if "readonly" in text or "read-only" in text:
        return "the database file (or its folder) is read-only: give mailcrm's user write access"
    return "check that the database is reachable and migrated (`mailcrm db upgrade`)"


def _prepare_sqlite_path(path: Path, create: bool) -> None:
    if path.exists():
        return
    if not create:
        raise DatabaseError(
            f"no database at {path}: run `mailcrm db upgrade` to create it, "
            "or point database.url at an existing one"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the folder of the database {path}: {exc.strerror}: "
            "point database.url at a folder mailcrm's user may write to"
        ) from None


def _first_line(exc: DBAPIError, url: URL) -> str:
    text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    text = text.removeprefix("connection failed: ").strip()
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _quoted(text: str, after: str) -> str | None:
    """The name in `after "name"` in a server message (psycopg: role "x" does not exist)."""
    match = re.search(after + r' "([^"]*)"', text)
    return match.group(1) if match else None


def _sqlite_problem(url: URL, text: str) -> str:
    path = Path(url.database or "")
    lower = text.lower()
    if path.is_dir():
        return "it is a directory, not a database file: point database.url at a file"
    if "not a database" in lower or "encrypted" in lower:
        return "not an SQLite database: point database.url at a mailcrm database"
    if "readonly" in lower or "read-only" in lower or "permission" in lower or "access" in lower:
        return "permission denied: give mailcrm's user read and write access to the file and its folder"
    if "unable to open" in lower:
        return (
            "the file cannot be opened: check that it exists and that mailcrm's user may "
            "read and write it and its folder"
        )
    return f"cannot be opened ({text}): point database.url at a mailcrm database"


def _postgres_problem(url: URL, text: str) -> str:
    lower = text.lower()
    user = url.username or "(default user)"
    if "connection refused" in lower:
        return "connection refused: start the PostgreSQL server, or fix the host and port in database.url"
    if (name := _quoted(text, "database")) is not None and "does not exist" in lower:
        return f'database "{name}" does not exist: create it (`createdb {name}`), then `mailcrm db upgrade`'
    if (role := _quoted(text, "role")) is not None and "does not exist" in lower:
        return f'role "{role}" does not exist: check the user in database.url (or `createuser {role}`)'
    if "authentication failed" in lower or "no password supplied" in lower:
        return f'authentication failed for user "{user}": check the user and password in database.url'
    if "permission denied" in lower:
        return f'user "{user}" may not connect to this database: grant it CONNECT, or use another user'
    if "translate host name" in lower or "name or service not known" in lower:
        return f'unknown host "{url.host}": fix the host in database.url'
    if "timeout" in lower or "timed out" in lower:
        return "no answer from the server: check the host and port in database.url, and any firewall"
    return f"cannot connect ({text}): check database.url and that the server accepts connections"


def open_error(url: URL, exc: DBAPIError) -> DatabaseError:
    """One line for a database that cannot be opened: where (password masked), what
    happened, and what to do."""
    text = _first_line(exc, url)
    sqlite = url.get_backend_name() == "sqlite"
    problem = _sqlite_problem(url, text) if sqlite else _postgres_problem(url, text)
    return DatabaseError(f"cannot open the database {url.render_as_string(hide_password=True)}: {problem}")


class Database:
    """Owns the engine; hands out short read or write sessions."""

    def __init__(self, url: URL | str, *, echo: bool = False, create: bool = True) -> None:
        """`create=False` (read-only commands) refuses an SQLite path that does not exist
        instead of making its folders and an empty database there."""
        self.url = make_url(url) if isinstance(url, str) else url
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            _prepare_sqlite_path(Path(self.url.database or ""), create)
        kwargs: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            kwargs.update(
                pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 10}
            )
        self.engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})

    def check(self) -> None:
        """Connect once, so a database that cannot be opened (server down, unknown
        database or role, a file that is not a database) fails here, in one line that
        names it, rather than as a traceback from wherever it is first used."""
        try:
            with self.engine.connect() as connection:
                # sqlite_master makes SQLite read the file's header: a text file fails here.
                connection.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master" if self.is_sqlite else "SELECT 1"
                )
        except DBAPIError as exc:
            raise open_error(self.url, exc) from None
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            # SQLite opens a file it may not write read-only, and fails only at the first
            # write; every command writes (at least the salespeople from the settings).
            path = Path(self.url.database or "")
            for target in (path, path.parent):
                if not os.access(target, os.W_OK):
                    raise DatabaseError(
                        f"cannot open the database {self.display_url}: {target} is read-only: "
                        "give mailcrm's user write access to the file and its folder"
                    )

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end."""
        with self._guard(), Session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        with (
            self._guard(),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise DatabaseError(f"database error on {self.display_url}: {exc.orig}", hint=_hint(exc)) from exc
        except DBAPIError as exc:
            # e.g. a unique key taken by a concurrent writer: the transaction is rolled
            # back and the work can simply be retried.
            raise DatabaseError(f"database refused the change on {self.display_url}: {exc.orig}") from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
