"""Store fixtures: every storage test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sendrunner import write_templates
from sqlalchemy import text

from mailcrm.store import migrate
from mailcrm.store.db import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A URL for an empty database of each kind (PostgreSQL tables are dropped after)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mailcrm.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated, empty database."""
    database = Database(db_url)
    _reset(database)
    migrate.upgrade(database)
    yield database
    _reset(database)
    database.dispose()


def _reset(database: Database) -> None:
    if database.is_sqlite:
        return
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The small test templates (`sendrunner.write_templates`) in a fresh folder."""
    return write_templates(tmp_path / "templates")
