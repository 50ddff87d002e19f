"""`mailcrm demo`: a complete installation with sample data in one command."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from mailcrm.cli.output import JSON_HELP, console, emit, info, table
from mailcrm.demo import data, seed
from mailcrm.demo.summary import busiest_customer, summarize
from mailcrm.settings import load_settings
from mailcrm.store import migrate
from mailcrm.store import timeline as timeline_store
from mailcrm.store.db import Database, normalize_url
from mailcrm.store.models import Customer
from mailcrm.store.salespeople import sync_from_settings


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo installation (reset on every run).")
    ] = Path("mailcrm-demo"),
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Create a demo installation: config, SQLite database, sample customers, purchases
    and notes; then print a summary and one customer's timeline.

    Example: mailcrm demo && mailcrm --config mailcrm-demo/mailcrm.yaml customers list
    """
    from mailcrm.store.importer import import_customers, import_purchases

    paths = seed.prepare(directory)
    settings = load_settings(paths.config)
    db = Database(normalize_url(settings.database_url(), settings.base_dir))
    try:
        migrate.upgrade(db)
        with db.write() as session:
            sync_from_settings(session, settings)
        people = data.customers()
        seed.write_csvs(paths, people)
        customers_report = import_customers(db, paths.customers_csv)
        purchases_report = import_purchases(
            db,
            paths.purchases_csv,
            default_currency="THB",
            default_timezone=settings.defaults.timezone,
        )
        seed.add_history(db, people)
        with db.read() as session:
            summary = summarize(session)
            customer_id = busiest_customer(session)
            customer = session.get(Customer, customer_id) if customer_id else None
            entries = timeline_store.for_customer(session, customer_id, 12) if customer_id else []
    finally:
        db.dispose()
    config_arg = shlex.quote(str(paths.config))
    result = {
        "directory": str(paths.root),
        "config": str(paths.config),
        "database": str(paths.database),
        "imports": {
            "customers": customers_report.to_json(),
            "purchases": purchases_report.to_json(),
        },
        "summary": summary,
        "timeline": {"customer_id": customer_id, "entries": entries},
    }

    def human() -> None:
        console.print(f"[bold]mailcrm demo[/bold] in {paths.root}")
        console.print(
            f"  {summary['customers']} customers, {summary['companies']} companies, "
            f"{summary['purchases']} purchases, {summary['notes']} notes",
            highlight=False,
        )
        console.print(
            "  languages: " + ", ".join(f"{k} {v}" for k, v in summary["by_language"].items()),
            highlight=False,
        )
        console.print(
            "  lead sources: " + ", ".join(f"{k} {v}" for k, v in summary["by_lead_source"].items()),
            highlight=False,
        )
        console.print(
            "  revenue: " + ", ".join(f"{v} {k}" for k, v in summary["revenue"].items()),
            highlight=False,
        )
        if customer is not None:
            table(
                f"timeline of {customer.name} (id {customer.id})",
                ["when (UTC)", "kind", "what"],
                [[e.at.strftime("%Y-%m-%d %H:%M"), e.kind, e.summary] for e in entries],
            )
        info("try next:")
        for command in (
            f"mailcrm --config {config_arg} customers list",
            f"mailcrm --config {config_arg} customers list สม --json",
            f"mailcrm --config {config_arg} timeline {customer_id or 1}",
            f"mailcrm --config {config_arg} customers import {shlex.quote(str(paths.customers_csv))}",
        ):
            info(f"  {command}")

    emit(as_json, result, human)
