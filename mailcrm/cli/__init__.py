"""The `mailcrm` command line: thin commands over the store and the core.

Exit codes: 0 success, 1 failure (a `MailcrmError`, printed without a traceback),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mailcrm import __version__
from mailcrm import log as logsetup
from mailcrm.cli import (
    customers,
    db,
    mail,
    notes,
    outbox,
    plan,
    purchases,
    rules,
    setup,
    suppress,
    templates,
    users,
)
from mailcrm.cli.context import AppContext
from mailcrm.cli.demo import demo
from mailcrm.cli.output import err_console
from mailcrm.cli.timeline import timeline
from mailcrm.cli.web import web
from mailcrm.errors import MailcrmError
from mailcrm.log import mask_url

app = typer.Typer(
    name="mailcrm",
    help="A CRM for small sales teams that lives in email.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailcrm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration file (default: $MAILCRM_CONFIG, else ./config/mailcrm.yaml).",
            envvar="MAILCRM_CONFIG",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error.", envvar="MAILCRM_LOG_LEVEL")
    ] = "warning",
    log_format: Annotated[str, typer.Option(help="text or json.", envvar="MAILCRM_LOG_FORMAT")] = "text",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """A CRM for small sales teams that lives in email."""
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    logsetup.configure(log_level, log_format)
    context = AppContext(config_path=config)
    ctx.obj = context
    ctx.call_on_close(context.close)


app.add_typer(customers.app, name="customers")
app.add_typer(purchases.app, name="purchases")
app.add_typer(notes.app, name="notes")
app.add_typer(db.app, name="db")
app.add_typer(setup.config_app, name="config")
app.add_typer(mail.mailboxes_app, name="mailboxes")
app.add_typer(mail.import_app, name="import")
app.add_typer(rules.app, name="rules")
app.add_typer(templates.app, name="templates")
app.add_typer(outbox.app, name="outbox")
app.command("plan")(plan.plan)
app.add_typer(suppress.app, name="suppress")
app.command("unsuppress")(suppress.unsuppress)
app.add_typer(users.app, name="users")
app.command("sync")(mail.sync)
app.command("run")(mail.run)
app.command("timeline")(timeline)
app.command("init")(setup.init)
app.command("web")(web)


app.command("demo")(demo)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: usage errors and --help are handled by typer."""
    try:
        app(args=argv, prog_name="mailcrm")
    except MailcrmError as exc:
        err_console.print(f"[red]error:[/red] {escape(mask_url(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print(_INTERRUPTED)
        sys.exit(130)
    except SystemExit as exc:
        # typer turns Ctrl-C into a silent exit 130; say what became of the work.
        if exc.code == 130 and _by_ctrl_c(exc):
            err_console.print(_INTERRUPTED)
        raise


_INTERRUPTED = (
    "interrupted: what was already committed is kept (an import commits batch by batch); "
    "run the command again to finish"
)


def _by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt caused `exc`, through the exceptions typer wraps it in."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
