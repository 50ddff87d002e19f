"""What every command needs: settings (loaded once) and the database (opened on first use)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import typer

from mailcrm import wiring
from mailcrm.settings import Settings, load_settings
from mailcrm.store.db import Database, normalize_url
from mailcrm.store.salespeople import sync_team


@dataclass
class AppContext:
    """Shared by the commands of one invocation."""

    config_path: Path | None
    _settings: Settings | None = None
    _db: Database | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def database(self, *, ensure_schema: bool = True, create: bool = True) -> Database:
        """The database, created if brand new; refused if it needs `db upgrade`.

        Read-only commands pass `create=False`: a missing SQLite file is reported rather
        than created (with its folders) empty. A database that cannot be opened or whose
        schema does not match fails here with one line (`store.db.open_error`,
        `store.migrate.schema`).
        """
        if self._db is None:
            settings = self.settings
            db = Database(normalize_url(settings.database_url(), settings.base_dir), create=create)
            try:
                db.check()
                if ensure_schema:
                    from mailcrm.store import migrate  # alembic is slow to import; only when needed

                    migrate.ensure_ready(db)
                    with db.write() as session:
                        sync_team(session, wiring.team(settings))
            except BaseException:
                db.dispose()
                raise
            self._db = db
        return self._db

    def author(self) -> str:
        """Who is at the keyboard: $MAILCRM_USER, the only salesperson, or the OS user."""
        if os.environ.get("MAILCRM_USER"):
            return os.environ["MAILCRM_USER"]
        if len(self.settings.salespeople) == 1:
            return self.settings.salespeople[0].email
        return getpass.getuser()

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the top-level callback stored."""
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj
