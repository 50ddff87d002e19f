"""`mailcrm demo`: a complete installation with sample data in one command."""

from __future__ import annotations

import asyncio
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from mailcrm.cli.output import JSON_HELP, console, emit, info, table
from mailcrm.demo import data, mailbox, seed, sending
from mailcrm.demo.summary import busiest_customer, summarize
from mailcrm.errors import ConfigError
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
    and notes; then sync the salespeople's mailboxes from an IMAP server that runs only
    while the demo does, and print a summary and one customer's timeline.

    Example: mailcrm demo && mailcrm --config mailcrm-demo/mailcrm.yaml customers list
    """
    from mailcrm.store.importer import import_customers, import_purchases

    try:
        from mailcrm.demo.imap_server import DemoImapServer, server_version
        from mailcrm.demo.smtp_server import DemoSmtpServer
        from mailcrm.demo.smtp_server import server_version as smtp_version
    except ImportError as exc:
        raise ConfigError(
            f"the demo's mail servers cannot start: {exc}",
            hint="reinstall mailcrm (`pip install -e .`) so pymap and aiosmtpd are installed",
        ) from None

    clock = datetime.now(UTC)
    people = data.customers(clock)
    history = mailbox.history(people, clock)
    sent_dir = directory.resolve() / "sent"
    with DemoImapServer() as server, DemoSmtpServer(sent_dir) as smtp:
        paths = seed.prepare(
            directory,
            seed.ImapEndpoint(server.host, server.port),
            seed.SmtpEndpoint(smtp.host, smtp.port),
        )
        settings = load_settings(paths.config)
        db = Database(normalize_url(settings.database_url(), settings.base_dir))
        try:
            migrate.upgrade(db)
            with db.write() as session:
                sync_from_settings(session, settings)
            seed.write_csvs(paths, people)
            customers_report = import_customers(db, paths.customers_csv)
            purchases_report = import_purchases(
                db,
                paths.purchases_csv,
                default_currency="THB",
                default_timezone=settings.defaults.timezone,
            )
            seed.add_history(db, people)
            mailboxes = asyncio.run(seed.sync_mail(db, settings, server, history))
            planned = sending.plan(db, settings)
            stats = asyncio.run(sending.send(db, settings, smtp))
            with db.read() as session:
                outreach = sending.summary(session, settings, smtp, planned, stats)
                summary = summarize(session)
                outcome = seed.mail_outcome(session, people)
                customer_id = seed.showcase_customer(session) or busiest_customer(session)
                customer = session.get(Customer, customer_id) if customer_id else None
                entries = timeline_store.for_customer(session, customer_id, 12) if customer_id else []
        finally:
            db.dispose()
    folders = [folder for report in mailboxes for folder in report.to_json()["folders"]]
    totals = {
        name: sum(folder[name] for folder in folders)
        for name in ("fetched", "new_messages", "leads", "new_addresses", "bounces")
    }
    sync: dict[str, Any] = {
        "server": {"software": server_version(), "host": server.host, "port": server.port, "running": False},
        "mailboxes": [report.to_json() for report in mailboxes],
        "totals": totals,
        **outcome,
    }
    outgoing: dict[str, Any] = {
        "server": {"software": smtp_version(), "host": smtp.host, "port": smtp.port, "running": False},
        **outreach,
    }
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
        "sync": sync,
        "sending": outgoing,
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
        _print_mail(sync)
        _print_sending(outgoing, paths.root)
        if customer is not None:
            table(
                f"timeline of {customer.name} (id {customer.id})",
                ["when (UTC)", "kind", "what"],
                [[e.at.strftime("%Y-%m-%d %H:%M"), e.kind, e.summary] for e in entries],
            )
        info("try next:")
        commands = [
            f"mailcrm --config {config_arg} customers list",
            f"mailcrm --config {config_arg} customers list สม --json",
            f"mailcrm --config {config_arg} timeline {customer_id or 1}",
            f"mailcrm --config {config_arg} mailboxes status",
            f"mailcrm --config {config_arg} outbox list",
            f"mailcrm --config {config_arg} plan --days 7",
        ]
        if sync["suppressed"]:
            address = shlex.quote(sync["suppressed"][0]["address"])
            commands.append(f"mailcrm --config {config_arg} customers show {address}")
        for command in commands:
            info(f"  {command}")

    emit(as_json, result, human)


def _print_mail(sync: dict[str, Any]) -> None:
    """The mail section: what IMAP sync brought in, and what it changed besides timelines."""
    server, totals = sync["server"], sync["totals"]
    console.print(
        f"[bold]mail[/bold]: {totals['new_messages']} messages synced over IMAP from "
        f"{server['software']} on {server['host']}:{server['port']} (stopped again)",
        highlight=False,
    )
    console.print(
        f"  new leads: {totals['leads']}, hard bounces: {totals['bounces']}, "
        f"new addresses of customers: {totals['new_addresses']}",
        highlight=False,
    )
    for report in sync["mailboxes"]:
        counts = ", ".join(f"{f['folder']} {f['new_messages']}" for f in report["folders"])
        console.print(f"  {report['mailbox']}: {counts}", highlight=False)
    for lead in sync["leads"]:
        company = f", {lead['company']}" if lead["company"] else ""
        console.print(
            f"  new lead: {lead['name']} <{lead['email']}> ({lead['lead_source']}{company})", highlight=False
        )
    for found in sync["new_addresses"]:
        console.print(
            f"  new address: {found['name']} now also writes from {found['address']}", highlight=False
        )
    for row in sync["suppressed"]:
        console.print(f"  suppressed: {row['address']} ({row['reason']})", highlight=False)


def _print_sending(report: dict[str, Any], root: Path) -> None:
    """The automated-email section: planned and sent per rule, and where the messages are."""
    server, captured = report["server"], report["captured"]
    console.print(
        f"[bold]automated email[/bold]: {report['planned']} planned by the demo rules, "
        f"{report['sent']} sent over SMTP to {server['software']} on {server['host']}:{server['port']} "
        "(stopped again)",
        highlight=False,
    )
    for rule, counts in report["rules"].items():
        details = ", ".join(
            f"{counts[key]} {label}"
            for key, label in (
                ("later", "due later"),
                ("skipped", "skipped (too late)"),
                ("other", "not sent"),
            )
            if counts[key]
        )
        console.print(
            f"  {rule}: {counts['planned']} planned, {counts['sent']} sent"
            + (f", {details}" if details else ""),
            highlight=False,
        )
    folder = Path(captured["directory"])
    shown = folder.relative_to(root.parent) if folder.is_relative_to(root.parent) else folder
    console.print(f"  captured messages: {captured['count']} in {shown}/ (open any .eml in a mail client)",
                  highlight=False)  # fmt: skip
