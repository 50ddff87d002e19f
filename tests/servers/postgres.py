"""A throw-away PostgreSQL database per test session, so tests never share or leak schema.

The admin connection comes from ``MAILCRM_TEST_POSTGRES_URL`` (libpq URI or key=value form);
each session creates ``mailcrm_test_<random>`` there and drops it at the end.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import URL

POSTGRES_URL_ENV = "MAILCRM_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 3


def admin_conninfo() -> str:
    """The libpq connection string of the maintenance database tests create databases from."""
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def _connect(conninfo: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT, autocommit=True)


def postgres_available() -> str | None:
    """Return None when the admin database accepts connections, else why it does not."""
    conninfo = admin_conninfo()
    try:
        with _connect(conninfo) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {_redacted(conninfo)} ({POSTGRES_URL_ENV}): {exc}"
    return None


@dataclass(frozen=True)
class TestDatabase:
    """A database created for this test session, addressable by libpq and SQLAlchemy."""

    __test__ = False  # not a pytest test class despite its name

    name: str
    conninfo: str
    url: str


def create_database(prefix: str = "mailcrm_test") -> TestDatabase:
    """Create a uniquely named, empty database on the admin server."""
    admin = admin_conninfo()
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _connect(admin) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name))
        )
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    url = URL.create(
        "postgresql+psycopg",
        username=_str_or_none(params.get("user")),
        password=_str_or_none(params.get("password")),
        host=_str_or_none(params.get("host")),
        port=int(str(params["port"])) if params.get("port") else None,
        database=name,
    )
    return TestDatabase(
        name=name,
        conninfo=make_conninfo("", **params),
        url=url.render_as_string(hide_password=False),
    )


def drop_database(name: str) -> None:
    """Drop a test database, first ending connections a leaked engine may still hold."""
    with _connect(admin_conninfo()) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _redacted(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparseable conninfo>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
