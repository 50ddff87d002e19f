"""`mailcrm timeline CUSTOMER`: everything that happened with a customer, newest first."""

from __future__ import annotations

from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info, table
from mailcrm.cli.params import customer_argument, limit_option
from mailcrm.store import customers as customer_store
from mailcrm.store import timeline as store


def timeline(
    ctx: typer.Context,
    customer: Annotated[str, customer_argument()],
    limit: Annotated[int, limit_option("At most this many entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show a customer's timeline: emails, purchases, notes and other events, newest first.

    Example: mailcrm timeline somchai@example.co.th --limit 20
    """
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        record = customer_store.resolve(session, customer)
        assert record.id is not None
        entries = store.for_customer(session, record.id, limit)

    def human() -> None:
        if not entries:
            info(f"nothing on the timeline of {record.name} yet")
            return
        table(
            f"{record.name} (id {record.id})",
            ["when (UTC)", "kind", "what"],
            [[_when(e), e.kind, e.summary] for e in entries],
        )

    emit(as_json, entries, human)


def _when(entry: store.TimelineEntry) -> str:
    """UTC date and time; a purchase given as a date only shows that date, the customer's
    own calendar date (its UTC instant, the start of that local day, would mislead)."""
    if entry.kind == "purchase" and entry.payload.get("has_time") is False:
        return f"{entry.payload['date']} (local date)"
    return entry.at.strftime("%Y-%m-%d %H:%M")
