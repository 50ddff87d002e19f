"""`mailcrm outbox ...`: see, retry and cancel planned emails."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, console, emit, info, table
from mailcrm.cli.params import customer_option, id_argument, limit_option
from mailcrm.errors import ValidationError
from mailcrm.store import customers as customer_store
from mailcrm.store import outbox as store
from mailcrm.store.models import OutboxState
from mailcrm.store.outbox import OutboxDetail, OutboxView

app = typer.Typer(
    help="See what is planned, sent and failed; retry or cancel an email.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
RowId = Annotated[int, id_argument("Outbox row id (see `mailcrm outbox list`).")]
STATES = tuple(state.value for state in OutboxState)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _print_rows(rows: list[OutboxView]) -> None:
    if not rows:
        info("no outbox rows match")
        return
    table(
        None,
        ["id", "due", "state", "rule", "customer", "template", "tries", "last error"],
        [
            [
                r.id,
                _when(r.due_at),
                r.state,
                r.rule,
                r.customer or r.customer_id,
                r.template,
                r.attempts,
                (r.last_error or "")[:80],
            ]
            for r in rows
        ],
    )


def _print_detail(row: OutboxDetail) -> None:
    lines = [
        ("id", row.id),
        ("state", row.state),
        ("rule", row.rule),
        ("occurrence", row.occurrence),
        ("customer", f"{row.customer or '-'} (id {row.customer_id})"),
        ("template", row.template),
        ("sender", row.sender or "(the customer's owner)"),
        ("due", _when(row.due_at)),
        ("attempts", row.attempts),
        ("last error", row.last_error),
        ("why not sent", row.skip_reason),
        ("give up after", _when(row.deadline_at)),
        ("message id", row.message_id),
        ("in reply to", row.in_reply_to),
        ("claimed by", row.claimed_by),
        ("sent", _when(row.sent_at)),
    ]
    for label, value in lines:
        if value not in (None, ""):
            console.print(f"[bold]{label:>14}[/bold]  {escape(str(value))}", highlight=False)
    if row.history:
        table(
            "attempts",
            ["at", "outcome", "code", "reason", "reply"],
            [
                [
                    a.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                    a.outcome,
                    "" if a.code is None else a.code,
                    a.reason or "",
                    (a.reply or "")[:100],
                ]
                for a in row.history
            ],
        )


@app.command("list")
def list_rows(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help=f"Only rows in this state: {', '.join(STATES)}.")] = None,
    customer: Annotated[str | None, customer_option(help="Only this customer (id or email address).")] = None,
    rule: Annotated[str | None, typer.Option(help="Only rows of this rule.")] = None,
    limit: Annotated[int, limit_option("At most this many rows (latest due first).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List outbox rows, latest due first.

    Example: mailcrm outbox list --state failed
    """
    if state is not None and state not in STATES:
        raise ValidationError(f"unknown state {state!r}", hint=f"use one of: {', '.join(STATES)}")
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        customer_id = customer_store.resolve(session, customer).id if customer else None
        rows = store.list_rows(session, state=state, customer_id=customer_id, rule=rule, limit=limit)
    emit(as_json, rows, lambda: _print_rows(rows))


@app.command("show")
def show(ctx: typer.Context, row_id: RowId, as_json: JsonOption = False) -> None:
    """Show one outbox row: why it is in its state, its Message-ID and its attempts.

    Example: mailcrm outbox show 42
    """
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        row = store.get(session, row_id)
    emit(as_json, row, lambda: _print_detail(row))


@app.command("retry")
def retry(ctx: typer.Context, row_id: RowId, as_json: JsonOption = False) -> None:
    """Queue a failed (or delivery_unknown) email again, due now, with the same Message-ID.

    Example: mailcrm outbox retry 42
    """
    row = store.retry(app_context(ctx).database(), row_id)
    emit(as_json, row, lambda: info(f"outbox row {row.id} is due again"))


@app.command("cancel")
def cancel(ctx: typer.Context, row_id: RowId, as_json: JsonOption = False) -> None:
    """Never send this email (refused once it is sent or while it is being sent).

    Example: mailcrm outbox cancel 42
    """
    row = store.cancel(app_context(ctx).database(), row_id)
    emit(as_json, row, lambda: info(f"outbox row {row.id} cancelled"))
