"""Schema migrations (Alembic), driven from code so no alembic.ini is needed.

The functions take the `Database`: migrations run (and commit) DDL in transactions of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
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
    """Bring the schema up to `revision`; returns (before, after). A database this code
    cannot migrate (newer, or tables without a version) is refused with one line.

    `default_timezone` is `defaults.timezone`: migrations that convert stored dates read
    it (0004: which zone old date-only purchases were written in).
    """
    found = schema(db)
    if found.state in (SchemaState.NEWER, SchemaState.UNVERSIONED):
        raise DatabaseError(found.problem or "")
    before = found.current
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


def known_revisions() -> list[str]:
    """Every migration shipped with this mailcrm, oldest first."""
    scripts = ScriptDirectory.from_config(_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


class SchemaState(StrEnum):
    """How a database's schema relates to this mailcrm's migrations."""

    CURRENT = "current"  # at this mailcrm's head
    EMPTY = "empty"  # no tables at all: `db upgrade` (or any command) creates the schema
    BEHIND = "behind"  # an older mailcrm's schema: `db upgrade` migrates it
    NEWER = "newer"  # a revision this mailcrm does not know: made by a newer mailcrm
    UNVERSIONED = "unversioned"  # tables but no alembic_version: not mailcrm's, or made by hand


@dataclass(frozen=True)
class Schema:
    """The database's schema revision, this mailcrm's newest, and what that means."""

    state: SchemaState
    current: str | None
    head: str | None
    problem: str | None  # one line saying what is wrong and what to do; None when usable


def schema(db: Database) -> Schema:
    """Tell apart a current, empty, older, newer and unversioned database."""
    current = current_revision(db)
    known = known_revisions()
    head = known[-1] if known else None
    where = db.display_url
    if current == head:
        return Schema(SchemaState.CURRENT, current, head, None)
    if current is None:
        if not inspect(db.engine).get_table_names():
            return Schema(SchemaState.EMPTY, None, head, f"{where}: empty: run `mailcrm db upgrade`")
        return Schema(
            SchemaState.UNVERSIONED,
            None,
            head,
            f"{where}: tables but no schema version: not a mailcrm database, or made by hand; "
            "point database.url at a mailcrm database (or an empty one)",
        )
    if current in known:
        return Schema(
            SchemaState.BEHIND,
            current,
            head,
            f"{where}: schema {current}, this mailcrm needs {head}: "
            "run `mailcrm db upgrade` (back up the database first)",
        )
    return Schema(
        SchemaState.NEWER,
        current,
        head,
        f"{where}: schema {current}, this mailcrm knows up to {head}: upgrade mailcrm",
    )


def ensure_ready(db: Database) -> None:
    """Create a brand-new database; refuse one that is behind, ahead of or foreign to the code."""
    found = schema(db)
    if found.state is SchemaState.EMPTY:
        upgrade(db)
    elif found.problem is not None:
        raise DatabaseError(found.problem)
