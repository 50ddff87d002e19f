"""Migration 0006 (users) on both databases: it adds the users tables to a database
holding data, keeps that data, and comes off again cleanly."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from mailcrm.store import migrate
from mailcrm.store.db import Database

USERS_TABLES = {"app_user", "api_token", "login_throttle", "audit_log"}


def _downgrade(db: Database, revision: str) -> None:
    config = migrate._config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_0006_adds_the_users_tables_beside_existing_data_and_can_be_undone(db_url: str) -> None:
    db = Database(db_url)
    try:
        _reset(db)
        migrate.upgrade(db, "0005")
        assert USERS_TABLES.isdisjoint(inspect(db.engine).get_table_names())
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO salesperson (email, name, created_at) VALUES ('a@acme.example', 'A', :now)"
                ),
                {"now": "2026-12-08 09:00:00"},
            )
        assert migrate.upgrade(db) == ("0005", migrate.head_revision())
        assert set(inspect(db.engine).get_table_names()) >= USERS_TABLES
        assert migrate.drift(db) == []
        with db.engine.begin() as connection:
            person = connection.execute(text("SELECT id FROM salesperson")).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO app_user (email, role, salesperson_id, password_hash, disabled, "
                    "created_at, updated_at, password_changed_at) "
                    "VALUES ('a@acme.example', 'salesperson', :p, 'x', false, :now, :now, :now)"
                ),
                {"p": person, "now": "2026-12-08 09:00:00"},
            )
        _downgrade(db, "0005")
        assert USERS_TABLES.isdisjoint(inspect(db.engine).get_table_names())
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT email FROM salesperson")).scalars().all() == [
                "a@acme.example"
            ]
        migrate.upgrade(db)
        assert migrate.drift(db) == []
    finally:
        _reset(db)
        db.dispose()


def _reset(db: Database) -> None:
    if db.is_sqlite:
        return
    with db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
