"""`mailcrm purchases ...`: record what customers bought."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.imports import run_import
from mailcrm.cli.output import JSON_HELP, emit, info
from mailcrm.cli.params import count_option, customer_argument
from mailcrm.store import customers as customer_store

app = typer.Typer(help="Record purchases, one by one or from CSV.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@app.command("add")
def add(
    ctx: typer.Context,
    customer: Annotated[str, customer_argument()],
    product: Annotated[str, typer.Option(help="What was bought.")],
    amount: Annotated[str, typer.Option(help="Total paid, e.g. 1250.50.")],
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code, e.g. THB.")] = None,
    quantity: Annotated[int, count_option("How many.")] = 1,
    date: Annotated[
        str | None,
        typer.Option(
            help="When: YYYY-MM-DD (the customer's calendar date) or an ISO date-time "
            "(without an offset: the customer's local time); default now."
        ),
    ] = None,
    order_ref: Annotated[str | None, typer.Option(help="Order or invoice number.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record one purchase (a lead becomes a customer).

    Example: mailcrm purchases add 42 --product "Seminar ticket" --amount 3500 --currency THB
    """
    from datetime import UTC, datetime

    from mailcrm.domain.purchases import purchase_from_fields
    from mailcrm.domain.values import parse_when
    from mailcrm.errors import ValidationError

    context = app_context(ctx)
    settings = context.settings
    if date is not None:
        # A bad date is a usage error (exit 2) naming the option, before anything is opened.
        try:
            parse_when(date)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--date'") from None
    draft = purchase_from_fields(
        {
            "date": date or datetime.now(UTC).isoformat(timespec="seconds"),
            "product": product,
            "amount": amount,
            "currency": currency,
            "quantity": str(quantity),
            "order_ref": order_ref,
        },
        default_currency=currency or "USD",
        default_timezone=settings.defaults.timezone,
    )
    db = context.database()
    with db.write() as session:
        record = customer_store.resolve(session, customer)
        assert record.id is not None
        from mailcrm.store import purchases as store

        created = store.add(session, record.id, draft, default_timezone=settings.defaults.timezone)
    result = {"customer_id": record.id, "created": created, "duplicate": not created}
    emit(
        as_json,
        result,
        lambda: info(
            f"recorded purchase for customer {record.id}"
            if created
            else "this purchase was already recorded; nothing changed"
        ),
    )


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file with a header row.")],
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="Map a CSV header to a field: 'Header=field' (repeatable)."),
    ] = None,
    currency: Annotated[str, typer.Option(help="Currency for rows without a currency column.")] = "USD",
    dry_run: Annotated[bool, typer.Option(help="Validate and count, change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Import purchases from CSV (columns: email, date, product, quantity, amount, currency,
    order_ref); re-importing the same file changes nothing.

    Example: mailcrm purchases import orders.csv --currency THB
    """
    from mailcrm.store.importer import import_purchases

    context = app_context(ctx)
    db = context.database()
    run_import(
        file,
        as_json,
        lambda progress: import_purchases(
            db,
            file,
            overrides=mapping or (),
            default_currency=currency,
            default_timezone=context.settings.defaults.timezone,
            on_progress=progress,
            dry_run=dry_run,
        ),
    )
