"""`mailcrm sync`, `mailcrm run`, `mailcrm mailboxes status`, `mailcrm import mbox|maildir`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from mailcrm import daemon, wiring
from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, err_console, info, table
from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.delivery_reports import sender_issue_line
from mailcrm.errors import MailcrmError, NotFoundError
from mailcrm.store import cursors, malformed, sender_issues
from mailcrm.sync.supervisor import MAILBOX_LEVEL, identities

mailboxes_app = typer.Typer(help="Mailbox sync status.", no_args_is_help=True)
import_app = typer.Typer(help="Backfill history from mail files.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
MailboxOption = Annotated[
    list[str] | None,
    typer.Option("--mailbox", "-m", help="Only this salesperson's mailbox (email or name; repeatable)."),
]


def _progress(enabled: bool, in_bytes: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        DownloadColumn() if in_bytes else MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )


def sync(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Sync every folder once, then exit.")] = False,
    mailbox: MailboxOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sync salespeople's IMAP mailboxes onto customer timelines.

    With --once every folder is synced once (a progress bar shows the first, long
    sync); without it, sync runs until Ctrl-C like `mailcrm run`.

    Example: mailcrm sync --once --mailbox alice@acme.example
    """
    context = app_context(ctx)
    db = context.database()
    if not once:
        asyncio.run(daemon.run(db, context.settings, only=mailbox or (), plan_and_send=False))
        return
    chosen = daemon.mailbox_workers(db, context.settings, mailbox or ())
    if not chosen:
        raise NotFoundError(
            "no mailbox to sync", hint="configure `imap:` for a salesperson, or check --mailbox"
        )
    report: list[dict[str, Any]] = []
    failed = False
    with _progress(not as_json and err_console.is_terminal) as progress:
        for worker in chosen:
            tasks: dict[str, Any] = {}

            def on_progress(
                folder: str,
                done: int,
                total: int,
                who: str = worker.mailbox.email,
                tasks: dict[str, Any] = tasks,
            ) -> None:
                key = f"{who} {folder}"
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=total)
                progress.update(tasks[key], completed=done, total=total)

            try:
                results = asyncio.run(worker.sync_once(on_progress))
            except MailcrmError as exc:
                failed = True
                report.append({"mailbox": worker.mailbox.email, "error": str(exc)})
                err_console.print(f"[red]{worker.mailbox.email}:[/red] {exc}", highlight=False)
                continue
            report.append(
                {
                    "mailbox": worker.mailbox.email,
                    "folders": [
                        {
                            "folder": r.folder,
                            "fetched": r.fetched,
                            "new_messages": r.stats.new_messages,
                            "links": r.stats.links,
                            "leads": r.stats.leads,
                            "bounces": r.stats.bounces,
                            "malformed": r.stats.malformed,
                            "uidvalidity_changed": r.uidvalidity_changed,
                            "flags_changed": r.flags_changed,
                            "expunged": r.expunged,
                            "confirmed_sends": r.stats.confirmed_sends,
                        }
                        for r in results
                    ],
                }
            )

    def human() -> None:
        for entry in report:
            for folder in entry.get("folders", []):
                info(
                    f"{entry['mailbox']} {folder['folder']}: {folder['new_messages']} new, "
                    f"{folder['leads']} new leads, {folder['bounces']} bounces, "
                    f"{folder['malformed']} malformed"
                )

    emit(as_json, report, human)
    if failed:
        raise SystemExit(1)


def run(ctx: typer.Context, mailbox: MailboxOption = None, as_json: JsonOption = False) -> None:
    """Start the daemon: sync mailboxes (IDLE push, polling otherwise), plan the rules'
    emails and send them, until SIGTERM or Ctrl-C; then stop cleanly.

    Example: MAILCRM_LOG_LEVEL=info mailcrm run
    """
    context = app_context(ctx)
    db = context.database()
    finished = asyncio.run(daemon.run(db, context.settings, only=mailbox or ()))
    states = [
        {
            "mailbox": w.state.name,
            "synced": w.state.synced,
            "failures": w.state.failures,
            "last_error": w.state.last_error,
        }
        for w in finished
    ]
    emit(as_json, states, lambda: info("stopped"))


@mailboxes_app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Per mailbox folder: last sync, messages stored, errors and the last error; then
    the messages stored as malformed (folder, UID, why); then the sender-side problems
    found in bounces and SMTP replies (fix these on your side).

    With --json each folder row (`kind` "folder") has `malformed` (a count) and
    `malformed_messages`; folders of `import mbox|maildir` appear when they hold
    malformed messages; sender-side problems follow as rows of `kind` "sender_issue".

    Example: mailcrm mailboxes status --json
    """
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        counts = malformed.malformed_counts(session)
        found = malformed.malformed_messages(session, limit=MALFORMED_SHOWN)
        rows: list[dict[str, Any]] = [
            {
                "kind": "folder",
                "mailbox": c.mailbox,
                "folder": c.folder if c.folder != MAILBOX_LEVEL else None,
                "uidvalidity": c.uidvalidity,
                "last_uid": c.last_uid,
                "highestmodseq": c.highestmodseq,
                "messages": c.messages,
                "errors": c.errors,
                "last_error": c.last_error,
                "last_sync_at": c.last_sync_at,
            }
            for c in cursors.all_cursors(session)
        ]
        issues = sender_issues.all_issues(session)
    _add_malformed(rows, counts, found)
    rows += [_issue_row(issue) for issue in issues]

    def human() -> None:
        folders = [r for r in rows if r["kind"] == "folder"]
        if not rows:
            info("nothing synced yet: run `mailcrm sync --once`")
            return
        if folders:
            table(
                None,
                ["mailbox", "folder", "last sync (UTC)", "messages", "errors", "malformed", "last error"],
                [
                    [
                        r["mailbox"],
                        r["folder"] or "(connection)",
                        r["last_sync_at"].strftime("%Y-%m-%d %H:%M:%S") if r["last_sync_at"] else "",
                        "" if r["messages"] is None else r["messages"],
                        "" if r["errors"] is None else r["errors"],
                        r["malformed"] if r["folder"] else "",
                        r["last_error"] or "",
                    ]
                    for r in folders
                ],
            )
        if found:
            table(
                "messages stored as malformed",
                ["mailbox", "folder", "UID", "Message-ID", "subject", "why"],
                [_malformed_cells(m) for m in found],
            )
        if sum(counts.values()) > len(found):
            info(f"... and {sum(counts.values()) - len(found)} more malformed messages")
        if issues:
            table(
                "sender-side problems (fix these on your side; customers' addresses are fine)",
                ["mailbox", "first seen (UTC)", "last seen (UTC)", "times", "problem"],
                [
                    [
                        i.salesperson or i.sender_domain,
                        i.first_seen.strftime("%Y-%m-%d %H:%M"),
                        i.last_seen.strftime("%Y-%m-%d %H:%M"),
                        i.count,
                        _issue_line(i),
                    ]
                    for i in issues
                ],
            )

    emit(as_json, rows, human)


def _issue_line(issue: sender_issues.SenderIssueView) -> str:
    cause = BounceReason(issue.cause) if issue.cause in BounceReason.__members__.values() else None
    evidence = issue.detail or issue.status
    if cause is None:
        return f"mail from {issue.sender_domain} is refused at {issue.receiving_domain} ({issue.cause})"
    return sender_issue_line(issue.sender_domain, cause, issue.receiving_domain, evidence)


def _issue_row(issue: sender_issues.SenderIssueView) -> dict[str, Any]:
    """A sender-side issue in the `mailboxes status --json` list: the folder row's fields
    (`folder` null, `errors` the count, `last_error` the advice) plus its own."""
    return {
        "kind": "sender_issue",
        "mailbox": issue.salesperson,
        "folder": None,
        "uidvalidity": None,
        "last_uid": None,
        "highestmodseq": None,
        "messages": None,
        "errors": issue.count,
        "last_error": _issue_line(issue),
        "last_sync_at": issue.last_seen,
        "sender_domain": issue.sender_domain,
        "cause": issue.cause,
        "receiving_domain": issue.receiving_domain,
        "status": issue.status,
        "detail": issue.detail,
        "count": issue.count,
        "first_seen": issue.first_seen,
        "last_seen": issue.last_seen,
    }


MALFORMED_SHOWN = 200
"""How many malformed messages `mailboxes status` lists (the counts cover them all)."""


def _malformed_cells(m: malformed.MalformedMessage) -> list[Any]:
    uid = "" if m.uid is None else m.uid
    return [m.mailbox or "", m.folder or "", uid, m.message_id, m.subject or "", m.why]


def _add_malformed(
    rows: list[dict[str, Any]],
    counts: dict[tuple[str | None, str | None], int],
    found: list[malformed.MalformedMessage],
) -> None:
    """Give each folder row its malformed count and messages; add rows for folders that
    have malformed messages but no sync cursor (imports)."""
    by_folder = {(r["mailbox"], r["folder"]): r for r in rows}
    for mailbox, folder in counts:
        if (mailbox, folder) not in by_folder:
            row: dict[str, Any] = dict.fromkeys(_CURSOR_FIELDS)
            row.update(kind="folder", mailbox=mailbox, folder=folder)
            rows.append(row)
            by_folder[(mailbox, folder)] = row
    for row in rows:
        row["malformed"] = counts.get((row["mailbox"], row["folder"]), 0)
        row["malformed_messages"] = [
            {"uid": m.uid, "message_id": m.message_id, "subject": m.subject, "why": m.why}
            for m in found
            if (m.mailbox, m.folder) == (row["mailbox"], row["folder"])
        ]


_CURSOR_FIELDS = (
    "mailbox",
    "folder",
    "uidvalidity",
    "last_uid",
    "highestmodseq",
    "messages",
    "errors",
    "last_error",
    "last_sync_at",
)


def _backfill(ctx: typer.Context, kind: str, path: Path, mailbox: str | None, as_json: bool) -> None:
    """Import a mail file; exits 1 when any message was skipped (each is named), after
    importing all the others."""
    from mailcrm.sync.backfill import BatchLimits, backfill
    from mailcrm.sync.mailfiles import open_source

    context = app_context(ctx)
    db = context.database()
    settings = context.settings
    known = identities(db, wiring.team(settings), wiring.match_policy(settings))
    if not known:
        raise NotFoundError("no salespeople configured", hint="add one under `salespeople:` first")
    if mailbox:
        identity = known.get(mailbox.strip().lower())
        if identity is None:
            raise NotFoundError(f"no salesperson {mailbox!r}", hint=f"one of: {', '.join(known)}")
    elif len(known) == 1:
        identity = next(iter(known.values()))
    else:
        raise MailcrmError(
            "several salespeople are configured", hint="name the owner of the file with --mailbox EMAIL"
        )
    source = open_source(kind, path, settings.sync.max_message_bytes)
    limits = BatchLimits(messages=settings.sync.batch_messages, bytes=settings.sync.batch_bytes)
    # An mbox is streamed: its progress is in bytes read; a Maildir's in files.
    with _progress(not as_json and err_console.is_terminal, in_bytes=kind == "mbox") as progress:
        task = progress.add_task(f"importing {path.name}", total=source.total)
        done = backfill(
            db,
            source,
            identity,
            f"import:{path.name}",
            limits,
            lambda n: progress.update(task, completed=n),
        )
    stats = done.stats
    result = {
        "file": str(path),
        "mailbox": identity.name,
        "messages": stats.messages,
        "new_messages": stats.new_messages,
        "links": stats.links,
        "leads": stats.leads,
        "bounces": stats.bounces,
        "malformed": stats.malformed,
        "skipped": [{"where": s.where, "why": s.why} for s in done.skipped],
    }

    def human() -> None:
        info(
            f"{path}: {stats.messages} messages, {stats.new_messages} new, {stats.leads} new leads, "
            f"{stats.malformed} malformed, {len(done.skipped)} skipped"
        )
        for skipped in done.skipped:
            info(f"  skipped {skipped.where}: {skipped.why}")

    emit(as_json, result, human)
    if done.skipped:
        raise SystemExit(1)


OwnerOption = Annotated[
    str | None, typer.Option("--mailbox", "-m", help="Salesperson whose mail this is (email).")
]


@import_app.command("mbox")
def import_mbox(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An mbox file, e.g. a Gmail Takeout export.")],
    mailbox: OwnerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Backfill history from an mbox file (re-running it adds nothing).

    Example: mailcrm import mbox ~/Takeout/Mail/All\\ mail.mbox --mailbox alice@acme.example
    """
    _backfill(ctx, "mbox", file, mailbox, as_json)


@import_app.command("maildir")
def import_maildir(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A Maildir folder (with cur/ and new/).")],
    mailbox: OwnerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Backfill history from a Maildir (re-running it adds nothing).

    Example: mailcrm import maildir ~/Maildir --mailbox alice@acme.example
    """
    _backfill(ctx, "maildir", directory, mailbox, as_json)
