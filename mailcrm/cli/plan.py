"""`mailcrm plan`: who gets which email when (a forecast), or one planning pass."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

import typer

from mailcrm import planner
from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info, table
from mailcrm.cli.params import MOMENT_RANGE, bounded_float, moment
from mailcrm.store.outbox import primary_addresses


def plan(
    ctx: typer.Context,
    days: Annotated[
        float,
        typer.Option(parser=bounded_float("--days", 0.01, 366), help="How many days ahead (0.01 to 366)."),
    ] = 7,
    at: Annotated[
        str | None,
        typer.Option(
            help=f"Start of the forecast (ISO date-time, UTC unless an offset is given; {MOMENT_RANGE})."
        ),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Run one planning pass now and write the outbox instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Forecast the automated emails of the next N days (writes nothing).

    Each line: rule, customer, template, due time (UTC) and the occurrence key that
    makes it unique. With --apply, plan now and write the outbox (as the daemon does).

    Example: mailcrm plan --days 7 --json
    """
    start = moment("--at", at)  # a usage error comes before any database is opened
    context = app_context(ctx)
    settings = context.settings
    db = context.database(create=False)
    rules = planner.configured_rules(settings)
    if apply:
        report = planner.plan(db, settings, rules, start)
        result: Any = {
            "planned": report.planned,
            "inserted": report.inserted,
            "skipped_late": report.skipped_late,
            "per_rule": report.per_rule,
        }
        emit(as_json, result, lambda: info(f"planned {report.planned} emails, {report.inserted} new"))
        return
    emails = planner.forecast(db, settings, rules, start, days)
    with db.read() as session:
        addresses = primary_addresses(session, {e.customer_id for e in emails})
    rows: list[dict[str, Any]] = [
        {
            "rule": e.rule,
            "customer_id": e.customer_id,
            "customer": addresses.get(e.customer_id),
            "template": e.template,
            "due_at": e.due_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "occurrence": e.occurrence,
            "sender": e.sender,
            "in_reply_to": e.in_reply_to,
        }
        for e in emails
    ]

    def human() -> None:
        if not rows:
            info(f"no automated email due in the {days:g} days from {start:%Y-%m-%d %H:%M} UTC")
            return
        table(
            None,
            ["due (UTC)", "rule", "customer", "template", "occurrence"],
            [[r["due_at"][:16].replace("T", " "), r["rule"], r["customer"], r["template"], r["occurrence"]]
             for r in rows],
        )  # fmt: skip

    emit(as_json, rows, human)
