"""`mailcrm demo`: a complete installation with sample data in one command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailcrm import wiring
from mailcrm.cli.output import JSON_HELP, console, emit, err_console, info, table
from mailcrm.demo import data, mailbox, seed, sending
from mailcrm.demo import serve as serve_demo
from mailcrm.demo.summary import busiest_customer, summarize
from mailcrm.errors import ConfigError
from mailcrm.settings import load_settings
from mailcrm.store import migrate, overview
from mailcrm.store import timeline as timeline_store
from mailcrm.store.db import Database, normalize_url
from mailcrm.store.salespeople import sync_team

if TYPE_CHECKING:
    from mailcrm.demo.imap_server import DemoImapServer
    from mailcrm.demo.smtp_server import DemoSmtpServer


def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo installation (reset on every run).")
    ] = Path("mailcrm-demo"),
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Afterwards keep the demo's mail servers up and run the daemon (`mailcrm run`) "
            "on them until Ctrl-C.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Create a demo installation: config, SQLite database, sample customers, purchases
    and notes; then sync the salespeople's mailboxes from an IMAP server that runs only
    while the demo does, and print a summary and one customer's timeline. With --serve,
    the daemon then runs on the demo until Ctrl-C, and new mail shows up as it arrives.

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
    # One event loop for the whole run: with --serve, the servers started for the sync and
    # the sends go on serving the daemon on it, and are stopped before the loop closes.
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(asyncio.Runner())
        server = stack.enter_context(DemoImapServer())
        smtp = stack.enter_context(DemoSmtpServer(sent_dir))
        if serve:
            stack.callback(lambda: runner.run(_stop_servers(server, smtp)))
        paths = seed.prepare(
            directory,
            seed.ImapEndpoint(server.host, server.port),
            seed.SmtpEndpoint(smtp.host, smtp.port),
        )
        settings = load_settings(paths.config)
        db = Database(normalize_url(settings.database_url(), settings.base_dir))
        stack.callback(db.dispose)
        migrate.upgrade(db)
        with db.write() as session:
            sync_team(session, wiring.team(settings))
        seed.write_csvs(paths, people)
        customers_report = import_customers(db, paths.customers_csv)
        purchases_report = import_purchases(
            db,
            paths.purchases_csv,
            default_currency="THB",
            default_timezone=settings.defaults.timezone,
        )
        seed.add_history(db, people)
        mailboxes = runner.run(seed.sync_mail(db, settings, server, history, keep_serving=serve))
        planned = sending.plan(db, settings)
        stats = runner.run(sending.send(db, settings, smtp, keep_serving=serve))
        with db.read() as session:
            outreach = sending.summary(session, settings, smtp, planned, stats)
            summary = summarize(session)
            outcome = seed.mail_outcome(session, people)
            customer_id = seed.showcase_customer(session) or busiest_customer(session)
            customer = overview.customer(session, customer_id) if customer_id else None
            entries = timeline_store.for_customer(session, customer_id, 12) if customer_id else []
            shown = serve_demo.example(session, settings, customer_id) if serve else None
        folders = [folder for report in mailboxes for folder in report.to_json()["folders"]]
        totals = {
            name: sum(folder[name] for folder in folders)
            for name in ("fetched", "new_messages", "leads", "new_addresses", "bounces")
        }
        sync: dict[str, Any] = {
            "server": {
                "software": server_version(),
                "host": server.host,
                "port": server.port,
                "running": serve,
            },
            "mailboxes": [report.to_json() for report in mailboxes],
            "totals": totals,
            **outcome,
        }
        outgoing: dict[str, Any] = {
            "server": {"software": smtp_version(), "host": smtp.host, "port": smtp.port, "running": serve},
            **outreach,
        }
        config_arg = shlex.quote(str(paths.config))
        result: dict[str, Any] = {
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
        if serve:
            result["serving"] = serve_demo.details(server, smtp, settings, paths.config, shown)

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
        if serve:
            sys.stdout.flush()  # the summary is complete before the daemon's first log line
            announce = partial(
                _print_serving, result["serving"], server_version(), smtp_version(), paths.root
            )
            if _log_level_is_default(ctx):
                # Watching the daemon pick up mail is the point of --serve; --log-level wins.
                logging.getLogger("mailcrm").setLevel(logging.INFO)
            finished = runner.run(serve_demo.run(db, settings, server, smtp, announce))
            synced = sum(worker.state.synced for worker in finished)
            info(f"stopped the daemon, then the demo's mail servers ({synced} new messages synced)")


def _log_level_is_default(ctx: typer.Context) -> bool:
    """Whether neither --log-level nor MAILCRM_LOG_LEVEL chose the level."""
    source = ctx.parent.get_parameter_source("log_level") if ctx.parent is not None else None
    return source is not None and source.name == "DEFAULT"


async def _stop_servers(*servers: DemoImapServer | DemoSmtpServer) -> None:
    """Stop the demo's servers (a no-op for one stopped already): with --serve they outlive
    the one-shot part, and must not outlive the command, whatever ended it."""
    for server in servers:
        await server.stop()


def _print_serving(serving: dict[str, Any], imap_software: str, smtp_software: str, root: Path) -> None:
    """The walk-through printed while serving (stderr, like every status line): where the
    servers listen, the logins, a command that delivers a new email, and where to see it.
    Commands are printed unwrapped so they can be copied and pasted."""
    imap, smtp, shown = serving["imap"], serving["smtp"], serving["example"]

    def line(text: str) -> None:
        err_console.print(text, highlight=False, markup=False, soft_wrap=True)

    line("serving: the daemon (as `mailcrm run`) syncs, plans and sends on the demo until Ctrl-C")
    address = f"{imap['host']}:{imap['port']}"
    line(f"  IMAP {address} ({imap_software}, plain login, no TLS), one login per salesperson:")
    for login in imap["logins"]:
        line(f"    user {login['username']}  password {login['password']}")
    folder = Path(smtp["captured"])
    shown_folder = folder.relative_to(root.parent) if folder.is_relative_to(root.parent) else folder
    address = f"{smtp['host']}:{smtp['port']}"
    line(f"  SMTP {address} ({smtp_software}): what the daemon sends lands in {shown_folder}/")
    if shown is not None:
        line(f"  deliver a new email from {shown['from']} to the INBOX of {shown['mailbox']}:")
        line(f"    {shown['deliver']}")
        line("  and see it on the customer's timeline a moment later:")
        line(f"    {shown['timeline']}")


def _print_mail(sync: dict[str, Any]) -> None:
    """The mail section: what IMAP sync brought in, and what it changed besides timelines."""
    server, totals = sync["server"], sync["totals"]
    console.print(
        f"[bold]mail[/bold]: {totals['new_messages']} messages synced over IMAP from "
        f"{server['software']} on {server['host']}:{server['port']} {_after(server)}",
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
        f"{_after(server)}",
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


def _after(server: dict[str, Any]) -> str:
    """What became of a demo server once its part was done."""
    return "(still running, see below)" if server["running"] else "(stopped again)"
