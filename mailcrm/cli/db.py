"""`mailcrm db ...`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info
from mailcrm.store import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Create the database or migrate it to this version's schema (safe to repeat).

    Example: MAILCRM_DATABASE_URL=postgresql://crm@db.internal/crm mailcrm db upgrade
    """
    context = app_context(ctx)
    db = context.database(ensure_schema=False)
    before, after = migrate.upgrade(db, default_timezone=context.settings.defaults.timezone)
    result = {"database": db.display_url, "from": before, "to": after}
    emit(
        as_json,
        result,
        lambda: info(
            f"{db.display_url}: already at {after}"
            if before == after
            else f"{db.display_url}: migrated {before or 'empty'} -> {after}"
        ),
    )


@app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the schema version of the database and of this mailcrm; exits 1 when they
    differ (an empty, older, newer or unversioned database), saying what to do.

    Example: mailcrm db status --json
    """
    db = app_context(ctx).database(ensure_schema=False, create=False)
    found = migrate.schema(db)
    result: dict[str, object] = {
        "database": db.display_url,
        "current": found.current,
        "head": found.head,
        "state": found.state.value,
        "up_to_date": found.problem is None,
        "problem": found.problem,
    }

    def human() -> None:
        info(f"{db.display_url}: schema {found.current or 'none'} (this mailcrm: {found.head})")
        if found.problem is not None:
            info(found.problem)

    emit(as_json, result, human)
    if found.problem is not None:
        raise SystemExit(1)
