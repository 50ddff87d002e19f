"""`mailcrm templates ...`: list the email templates and preview one for a real customer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from mailcrm import wiring
from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info, table
from mailcrm.cli.params import customer_option
from mailcrm.errors import ConfigError
from mailcrm.store.salespeople import TeamMember

app = typer.Typer(help="Email templates: list them, preview one for a customer.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
TemplatesOption = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        help="Templates folder (default: templates_dir from the config, else the shipped templates).",
        envvar="MAILCRM_TEMPLATES",
    ),
]

PREVIEW_BASE_URL = "https://mailcrm.invalid"  # links in a preview lead nowhere


def templates_dir(configured: Path, explicit: Path | None) -> Path:
    """The folder given with --templates, else the configured one (`templates_dir`, or the shipped set)."""
    folder = explicit if explicit is not None else configured
    if not folder.is_dir():
        raise ConfigError(
            f"templates folder {folder} does not exist",
            hint="set templates_dir in the config file, or pass --templates PATH",
        )
    return folder


@app.command("list")
def list_(ctx: typer.Context, templates: TemplatesOption = None, as_json: JsonOption = False) -> None:
    """List the templates and the languages each exists in.

    Example: mailcrm templates list
    """
    from mailcrm.render import TemplateError, TemplateRenderer

    renderer = TemplateRenderer(templates_dir(app_context(ctx).settings.templates_path(), templates))
    refused = renderer.refused()
    if len(refused) == 1:
        raise refused[0]
    if refused:
        raise TemplateError(
            f"{len(refused)} symlinks lead outside the templates folder:\n"
            + "\n".join(f"  {error.message}" for error in refused),
            hint=refused[0].hint,
        )
    rows = [
        {"name": name, "languages": sorted(renderer.languages(name))} for name in sorted(renderer.names())
    ]

    def human() -> None:
        if not rows:
            info(f"no templates in {renderer.templates_dir}")
            return
        table(
            str(renderer.templates_dir),
            ["template", "languages"],
            [[r["name"], ", ".join(r["languages"])] for r in rows],
        )

    emit(as_json, rows, human)


def _salesperson(team: Sequence[TeamMember], owner: str | None) -> dict[str, Any]:
    """The customer's owner from the team; else the only (or first) salesperson."""
    wanted = owner.strip().lower() if owner else None
    person = next((member for member in team if member.email == wanted), None)
    if person is None and team:
        person = team[0]
        info(f"preview: the customer has no owner; writing as {person.email}")
    if person is None:
        return {"name": "", "email": ""}
    return {
        "name": person.name,
        "email": person.email,
        "language": person.language,
        "timezone": person.timezone,
    }


@app.command("preview")
def preview(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name, e.g. thank_you.")],
    customer: Annotated[str, customer_option("--customer")],
    language: Annotated[
        str | None, typer.Option("--language", help="Render in this language (default: the customer's).")
    ] = None,
    templates: TemplatesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Render a template for a real customer (newest purchase, owner as sender) without sending it.

    Links to unsubscribe and feedback point to a placeholder address.
    Example: mailcrm templates preview thank_you --customer somchai@example.co.th --language th
    """
    from mailcrm.render import TemplateRenderer, template_context
    from mailcrm.store import customers as customer_store
    from mailcrm.store import purchases as purchase_store

    context = app_context(ctx)
    settings = context.settings
    renderer = TemplateRenderer(templates_dir(settings.templates_path(), templates))
    with context.database(create=False).read() as session:
        record = customer_store.resolve(session, customer)
        assert record.id is not None
        view = customer_store.views(session, [record])[0]
        newest = purchase_store.for_customer(session, record.id, limit=1)
        purchase = (
            {
                "product": newest[0].product,
                "quantity": newest[0].quantity,
                "amount_minor": newest[0].amount_minor,
                "currency": newest[0].currency,
                "purchased_at": newest[0].purchased_at,
                "purchased_on": newest[0].purchased_on,
                "has_time": newest[0].has_time,
                "order_ref": newest[0].order_ref,
            }
            if newest
            else None
        )
    seller = _salesperson(wiring.team(settings), view.owner)
    base = (settings.web.base_url or PREVIEW_BASE_URL).rstrip("/")
    variables = template_context(
        customer=view.model_dump(),
        salesperson=seller,
        purchase=purchase,
        unsubscribe_url=f"{base}/u/preview",
        extra={"feedback_url": lambda score: f"{base}/f/preview/{int(score)}"},
    )
    languages = (
        [language] if language else [view.language, seller.get("language"), settings.defaults.language]
    )
    timezone = view.timezone or seller.get("timezone") or settings.defaults.timezone
    rendered = renderer.render(
        name, languages=[tag for tag in languages if tag], context=variables, timezone=timezone
    )
    result = {
        "template": rendered.template,
        "language": rendered.language,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }

    def human() -> None:
        typer.echo(f"Template: {rendered.template} ({rendered.language})")
        typer.echo(f"Subject: {rendered.subject}\n")
        typer.echo(rendered.text)
        if rendered.html is not None:
            typer.echo("----- HTML -----")
            typer.echo(rendered.html)

    emit(as_json, result, human)
