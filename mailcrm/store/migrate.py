"""Schema migrations (Alembic), driven from code so no alembic.ini is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import mailcrm.store.models  # noqa: F401  (registers the tables)
from mailcrm.errors import DatabaseError
from mailcrm.store.db import Database

_SCRIPTS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str | None:
    """The newest migration shipped with this version of mailcrm."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The migration the database is at (None: never migrated)."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(
    db: Database, revision: str = "head", *, default_timezone: str = "UTC"
) -> tuple[str | None, str | None]:
    """Bring the schema up to `revision`; returns (before, after).

    `default_timezone` is `defaults.timezone`: migrations that convert stored dates read
    it (0004: which zone old date-only purchases were written in).
    """
    before = current_revision(db)
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["default_timezone"] = default_timezone
        command.upgrade(config, revision)
    return before, current_revision(db)


def drift(db: Database) -> list[Any]:
    """Differences between the models and the migrated schema (empty when in step)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def ensure_ready(db: Database) -> None:
    """Create a brand-new database; refuse to work on one that is behind the code."""
    current = current_revision(db)
    head = head_revision()
    if current == head:
        return
    if current is None and not inspect(db.engine).get_table_names():
        upgrade(db)
        return
    raise DatabaseError(
        f"database {db.display_url} is at schema {current or 'none'}, this mailcrm needs {head}",
        hint="run `mailcrm db upgrade` (back up the database first)",
    )
