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


def _set_version(db: Database, version: str | None) -> None:
    with db.engine.begin() as connection:
        if version is None:
            connection.execute(text("DROP TABLE alembic_version"))
        else:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})


def test_a_database_behind_the_code_is_refused_with_a_hint(db: Database) -> None:
    _set_version(db, migrate.known_revisions()[0])
    assert migrate.schema(db).state is migrate.SchemaState.BEHIND
    with pytest.raises(DatabaseError, match="mailcrm db upgrade"):
        migrate.ensure_ready(db)


def test_a_database_from_a_newer_mailcrm_is_told_apart(db: Database) -> None:
    _set_version(db, "0099")
    found = migrate.schema(db)
    assert found.state is migrate.SchemaState.NEWER
    assert found.problem is not None
    assert found.problem.endswith(
        f"schema 0099, this mailcrm knows up to {migrate.head_revision()}: upgrade mailcrm"
    )
    for refused in (migrate.ensure_ready, migrate.upgrade):
        with pytest.raises(DatabaseError, match="upgrade mailcrm"):
            refused(db)


def test_tables_without_a_version_are_not_an_empty_database(db: Database) -> None:
    _set_version(db, None)
    assert migrate.schema(db).state is migrate.SchemaState.UNVERSIONED
    for refused in (migrate.ensure_ready, migrate.upgrade):
        with pytest.raises(DatabaseError, match="tables but no schema version: not a mailcrm database"):
            refused(db)


def test_knows_up_to_is_read_from_the_migration_scripts() -> None:
    known = migrate.known_revisions()
    assert known[-1] == migrate.head_revision() and known == sorted(known)


def test_a_brand_new_database_is_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fresh = Database(f"sqlite:///{tmp_path}/new/mailcrm.db")
    migrate.ensure_ready(fresh)
    assert migrate.current_revision(fresh) == migrate.head_revision()
    fresh.dispose()
