"""`mailcrm customers ...`: keep customer records from the command line."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mailcrm.cli.context import app_context
from mailcrm.cli.imports import run_import
from mailcrm.cli.output import JSON_HELP, console, emit, info, json_text, print_json, table
from mailcrm.cli.params import customer_argument, limit_option, offset_option
from mailcrm.domain.addresses import normalize_address, smtputf8_note
from mailcrm.domain.csv_mapping import escape_formula
from mailcrm.domain.customers import CustomerDraft, draft_from_fields, parse_birthday
from mailcrm.domain.values import normalize_tag
from mailcrm.errors import ValidationError
from mailcrm.store import customers as store
from mailcrm.store.customers import CustomerView

app = typer.Typer(help="Add, find, edit, archive, import and export customers.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
CustomerRef = Annotated[str, customer_argument()]


def _draft(
    *,
    new_record: bool,
    name: str | None,
    emails: list[str] | None,
    phone: str | None,
    birthday: str | None,
    timezone: str | None,
    language: str | None,
    owner: str | None,
    lead_source: str | None,
    company: str | None,
    status: str | None,
    tags: list[str] | None,
    custom: list[str] | None,
) -> CustomerDraft:
    fields: dict[str, str | None] = {
        "name": name,
        "email": " ".join(emails or []),
        "phone": phone,
        "birthday": birthday,
        "timezone": timezone,
        "language": language,
        "owner": owner,
        "lead_source": lead_source,
        "company": company,
        "status": status,
        "tags": ",".join(tags or []),
    }
    for item in custom or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--set {item!r}: expected KEY=VALUE", hint="e.g. --set vat_id=TH123")
        fields[f"custom.{key.strip()}"] = value
    return draft_from_fields(fields, new_record=new_record)


def _show_one(view: CustomerView) -> None:
    console.print(f"[bold]{escape(view.name)}[/bold]  (id {view.id}, {view.status})", highlight=False)
    for address in view.emails:
        marks = []
        if address.primary:
            marks.append("primary")
        if address.suppressed:
            marks.append(f"suppressed: {address.suppression_reason}")
        suffix = f"  [{', '.join(marks)}]" if marks else ""
        console.print(f"  email     {address.address}{suffix}", highlight=False, markup=False)
    for label, value in (
        ("company", view.company),
        ("phone", view.phone),
        ("birthday", view.birthday),
        ("timezone", view.timezone),
        ("language", view.language),
        ("owner", view.owner),
        ("source", view.lead_source),
        ("tags", ", ".join(view.tags) if view.tags else None),
        ("purchases", view.purchases),
    ):
        if value not in (None, ""):
            console.print(f"  {label:<9} {value}", highlight=False, markup=False)
    for key, value in sorted(view.custom.items()):
        console.print(f"  {key:<9} {value}", highlight=False, markup=False)


Name = Annotated[str | None, typer.Option("--name", help="Full name.")]
Emails = Annotated[
    list[str] | None, typer.Option("--email", "-e", help="Email address (repeat for several).")
]
Phone = Annotated[str | None, typer.Option(help="Phone number, e.g. +66 2 123 4567.")]


def _birthday(value: str | None) -> str | None:
    """A bad or out-of-range birthday is a usage error (exit 2) naming the option, as `--date` is."""
    if value is not None and value.strip():
        try:
            parse_birthday(value)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--birthday'") from None
    return value


Birthday = Annotated[
    str | None, typer.Option(help="Birthday as YYYY-MM-DD (1900-01-01 to 2200-12-31).", callback=_birthday)
]
Timezone = Annotated[str | None, typer.Option(help="IANA timezone, e.g. Asia/Bangkok.")]
Language = Annotated[str | None, typer.Option(help="BCP 47 language tag, e.g. th, zh-Hans, fa.")]
Owner = Annotated[str | None, typer.Option(help="Email of the owning salesperson.")]
LeadSource = Annotated[str | None, typer.Option(help="How they found us, e.g. seminar, referral.")]
Company = Annotated[str | None, typer.Option(help="Company name (created when new).")]
Status = Annotated[str | None, typer.Option(help="lead, customer or archived.")]
Tags = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeat for several).")]
Custom = Annotated[
    list[str] | None, typer.Option("--set", help="Custom field KEY=VALUE (repeat for several).")
]


def _address_notes(given: list[str]) -> None:
    """Warn (stderr, in text and JSON mode) about addresses that need SMTPUTF8 to be mailed."""
    for raw in given:
        note = smtputf8_note(normalize_address(raw))
        if note:
            info(f"warning: {note}")


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    emails: Annotated[list[str], typer.Option("--email", "-e", help="Email address (repeatable).")],
    phone: Phone = None,
    birthday: Birthday = None,
    timezone: Timezone = None,
    language: Language = None,
    owner: Owner = None,
    lead_source: LeadSource = None,
    company: Company = None,
    status: Status = None,
    tags: Tags = None,
    custom: Custom = None,
    as_json: JsonOption = False,
) -> None:
    """Add a customer.

    Example: mailcrm customers add --name "Somchai Jaidee" -e somchai@example.co.th --tag vip
    """
    draft = _draft(
        new_record=True, name=name, emails=emails, phone=phone, birthday=birthday,
        timezone=timezone, language=language, owner=owner, lead_source=lead_source,
        company=company, status=status, tags=tags, custom=custom,
    )  # fmt: skip
    db = app_context(ctx).database()
    with db.write() as session:
        customer = store.create(session, draft)
        view = store.views(session, [customer])[0]
    emit(as_json, view, lambda: info(f"added customer {view.id}: {view.name} <{view.email}>"))
    _address_notes(emails)


@app.command("list")
def list_(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Argument(help="Text to find in name, email address or company.")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only customers with this tag.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only customers of this salesperson.")] = None,
    status: Status = None,
    include_archived: Annotated[bool, typer.Option("--all", help="Include archived.")] = False,
    limit: Annotated[int, limit_option("At most this many.")] = 100,
    offset: Annotated[int, offset_option("Skip this many first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List and search customers.

    Example: mailcrm customers list acme --tag vip --json
    """
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        rows = store.search(
            session, query, tag=tag, owner=owner, status=status,
            include_archived=include_archived, limit=limit, offset=offset,
        )  # fmt: skip
        views = store.views(session, rows)

    def human() -> None:
        if not views:
            info("no customers match")
            return
        table(
            None,
            ["id", "name", "email", "company", "owner", "status", "tags"],
            [[v.id, v.name, v.email, v.company, v.owner, v.status, ", ".join(v.tags)] for v in views],
        )

    emit(as_json, views, human)


@app.command("show")
def show(ctx: typer.Context, customer: CustomerRef, as_json: JsonOption = False) -> None:
    """Show one customer with all addresses (and whether each is suppressed).

    Example: mailcrm customers show somchai@example.co.th
    """
    db = app_context(ctx).database(create=False)
    with db.read() as session:
        view = store.views(session, [store.resolve(session, customer)])[0]
    emit(as_json, view, lambda: _show_one(view))


@app.command("edit")
def edit(
    ctx: typer.Context,
    customer: CustomerRef,
    name: Name = None,
    emails: Annotated[
        list[str] | None, typer.Option("--add-email", help="Add an address (repeatable).")
    ] = None,
    remove_emails: Annotated[
        list[str] | None, typer.Option("--remove-email", help="Remove an address (repeatable).")
    ] = None,
    primary: Annotated[str | None, typer.Option(help="Make this address the primary one.")] = None,
    phone: Phone = None,
    birthday: Birthday = None,
    timezone: Timezone = None,
    language: Language = None,
    owner: Owner = None,
    lead_source: LeadSource = None,
    company: Company = None,
    status: Status = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Add a tag (repeatable).")] = None,
    remove_tags: Annotated[
        list[str] | None, typer.Option("--remove-tag", help="Remove a tag (repeatable).")
    ] = None,
    custom: Custom = None,
    as_json: JsonOption = False,
) -> None:
    """Change a customer's fields, addresses and tags.

    Example: mailcrm customers edit 42 --add-email ann@work.example --tag seminar-2026
    """
    draft = _draft(
        new_record=False, name=name, emails=emails, phone=phone, birthday=birthday,
        timezone=timezone, language=language, owner=owner, lead_source=lead_source,
        company=company, status=status, tags=tags, custom=custom,
    )  # fmt: skip
    db = app_context(ctx).database()
    with db.write() as session:
        record = store.resolve(session, customer)
        store.update(
            session,
            record,
            draft,
            remove_emails=[normalize_address(a) for a in remove_emails or []],
            remove_tags=[normalize_tag(t) for t in remove_tags or []],
            primary=normalize_address(primary) if primary else None,
        )
        view = store.views(session, [record])[0]
    emit(as_json, view, lambda: info(f"updated customer {view.id}: {view.name}"))
    _address_notes(emails or [])


@app.command("archive")
def archive(ctx: typer.Context, customer: CustomerRef, as_json: JsonOption = False) -> None:
    """Archive a customer: history is kept, no automated email is sent to them.

    Example: mailcrm customers archive 42
    """
    db = app_context(ctx).database()
    with db.write() as session:
        record = store.resolve(session, customer)
        store.archive(session, record)
        view = store.views(session, [record])[0]
    emit(as_json, view, lambda: info(f"archived customer {view.id}: {view.name}"))


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file with a header row.", exists=False)],
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="Map a CSV header to a field: 'Header=field' (repeatable)."),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owner for rows that name none (salesperson email).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and count, change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Import customers from CSV; re-importing the same file changes nothing.

    Rows are matched to existing customers by any email address. Bad rows are reported
    with their line number and the reason; all valid rows are imported.

    Example: mailcrm customers import leads.csv --map "Kundennummer=custom.customer_no"
    """
    from mailcrm.store.importer import import_customers

    db = app_context(ctx).database()
    run_import(
        file,
        as_json,
        lambda progress: import_customers(
            db,
            file,
            overrides=mapping or (),
            default_owner=normalize_address(owner) if owner else None,
            on_progress=progress,
            dry_run=dry_run,
        ),
    )


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    include_archived: Annotated[bool, typer.Option("--all", help="Include archived.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of CSV.")] = False,
) -> None:
    """Export every customer as CSV (re-importable) or JSON Lines.

    A CSV cell starting with = + - @ tab or CR gets a leading ' so spreadsheets show it
    as text rather than run it as a formula; `customers import` removes that quote
    again. JSON Lines are written as stored.

    Example: mailcrm customers export -o customers.csv
    """
    db = app_context(ctx).database(create=False)
    handle = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    count = 0
    try:
        writer = None
        with db.read() as session:
            custom_keys = [] if as_json else store.custom_keys(session)
            for view in store.iter_all(session, include_archived=include_archived):
                count += 1
                if as_json:
                    handle.write(json_text(view) + "\n")
                    continue
                if writer is None:
                    writer = csv.writer(handle)
                    writer.writerow(
                        ["id", "name", "email", "phone", "birthday", "timezone", "language",
                         "owner", "lead_source", "status", "company", "tags"]
                        + [f"custom.{key}" for key in custom_keys]
                    )  # fmt: skip
                cells = (
                    [view.id, view.name, ";".join(a.address for a in view.emails), view.phone,
                     view.birthday, view.timezone, view.language, view.owner, view.lead_source,
                     view.status, view.company, ",".join(view.tags)]
                    + [view.custom.get(key) for key in custom_keys]
                )  # fmt: skip
                writer.writerow(["" if cell is None else escape_formula(str(cell)) for cell in cells])
    finally:
        if output:
            handle.close()
    if output:
        info(f"exported {count} customers to {output}")


__all__ = ["app", "print_json"]
