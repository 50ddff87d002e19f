"""Engine and transactions: SQLite (WAL, foreign keys, immediate write locks) or PostgreSQL.

The store is synchronous SQLAlchemy: one code path for the CLI and the daemon, which
runs store calls in a worker thread (`asyncio.to_thread`). SQLite's async drivers are
threads anyway, and bulk work (imports, planning) is fastest on the plain driver.
"""

from __future__ import annotations

import logging
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


class Database:
    """Owns the engine; hands out short read or write sessions."""

    def __init__(self, url: URL | str, *, echo: bool = False) -> None:
        self.url = make_url(url) if isinstance(url, str) else url
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})

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
