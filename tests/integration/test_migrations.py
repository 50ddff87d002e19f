"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mailcrm.errors import DatabaseError
from mailcrm.store import migrate
from mailcrm.store.db import Database


def test_models_and_migrations_do_not_drift(db: Database) -> None:
    assert migrate.current_revision(db) == migrate.head_revision()
    assert migrate.drift(db) == []


def test_upgrade_is_idempotent(db: Database) -> None:
    head = migrate.head_revision()
    assert migrate.upgrade(db) == (head, head)


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path}/mailcrm.db")
    migrate.upgrade(db)
    with db.read() as session:
        assert session.connection().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert session.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_a_database_behind_the_code_is_refused_with_a_hint(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    with pytest.raises(DatabaseError, match="mailcrm db upgrade"):
        migrate.ensure_ready(db)


def test_a_brand_new_database_is_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fresh = Database(f"sqlite:///{tmp_path}/new/mailcrm.db")
    migrate.ensure_ready(fresh)
    assert migrate.current_revision(fresh) == migrate.head_revision()
    fresh.dispose()
