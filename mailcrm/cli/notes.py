"""`mailcrm notes ...`: notes on customers."""

from __future__ import annotations

from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info
from mailcrm.cli.params import customer_argument
from mailcrm.store import customers as customer_store
from mailcrm.store import notes as store

app = typer.Typer(help="Leave notes on customers.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    customer: Annotated[str, customer_argument()],
    text: Annotated[str, typer.Argument(help="The note ('-' reads it from stdin).")],
    author: Annotated[str | None, typer.Option(help="Who wrote it (default: $MAILCRM_USER or you).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Add a note to a customer's timeline.

    Example: mailcrm notes add 42 "Met at the Bangkok seminar; wants a quote in March"
    """
    import sys

    context = app_context(ctx)
    body = sys.stdin.read() if text == "-" else text
    db = context.database()
    with db.write() as session:
        record = customer_store.resolve(session, customer)
        assert record.id is not None
        note = store.add(session, record.id, author or context.author(), body)
        result = {
            "id": note.id,
            "customer_id": record.id,
            "author": note.author,
            "created_at": note.created_at,
        }
    emit(as_json, result, lambda: info(f"noted on customer {record.id}"))
