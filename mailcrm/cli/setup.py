"""`mailcrm init` and `mailcrm config check`: start and verify a configuration."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info
from mailcrm.errors import ConfigError
from mailcrm.log import mask_url
from mailcrm.settings import Settings, plain_security_problems

config_app = typer.Typer(help="Check the configuration.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def starter_config() -> str:
    """The commented example configuration shipped with mailcrm."""
    return (files("mailcrm") / "resources" / "mailcrm.example.yaml").read_text(encoding="utf-8")


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the configuration in.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing mailcrm.yaml.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a commented starter configuration (DIR/mailcrm.yaml) and a rules folder.

    Example: mailcrm init config && mailcrm --config config/mailcrm.yaml config check
    """
    target = directory / "mailcrm.yaml"
    if target.exists() and not force:
        raise ConfigError(
            f"{target} already exists",
            hint="pass --force to overwrite it, or choose another folder",
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules").mkdir(exist_ok=True)
    target.write_text(starter_config(), encoding="utf-8")
    result = {"config": str(target), "rules_dir": str(directory / "rules")}
    emit(
        as_json,
        result,
        lambda: info(f"wrote {target}; edit it, then run `mailcrm --config {target} config check`"),
    )


def _summary(settings: Settings) -> dict[str, object]:
    return {
        "config": str(settings.source) if settings.source else None,
        "database": mask_url(settings.database_url()),  # as `db status` shows it
        "defaults": settings.defaults.model_dump(),
        "salespeople": [
            {
                "email": p.email,
                "imap": f"{p.imap.host}:{p.imap.effective_port}" if p.imap else None,
                "smtp": f"{p.smtp.host}:{p.smtp.effective_port}" if p.smtp else None,
            }
            for p in settings.salespeople
        ],
    }


@config_app.command("check")
def check(
    ctx: typer.Context,
    secrets: Annotated[
        bool, typer.Option(help="Also check that every referenced secret can be read.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate the configuration file (and optionally its secrets); exit 1 on any problem.

    Every `security: plain` host is resolved: it must be this machine (loopback only).

    Example: mailcrm --config config/mailcrm.yaml config check --secrets
    """
    settings = app_context(ctx).settings
    problems = plain_security_problems(settings)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigError(
            f"{len(problems)} problems in {settings.source}:\n" + "\n".join(f"  {p}" for p in problems)
        )
    if secrets:
        for person in settings.salespeople:
            for kind, account in (("imap", person.imap), ("smtp", person.smtp)):
                if account is not None and (kind == "imap" or account.has_secret()):
                    account.resolve(f"{person.email} {kind}")
    summary = _summary(settings)
    emit(as_json, summary, lambda: info(f"{summary['config'] or 'built-in defaults'}: OK"))
