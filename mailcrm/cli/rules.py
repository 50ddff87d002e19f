"""`mailcrm rules check` and `mailcrm rules list`: validate and show the automated-email rules.

The rules folder is `rules_dir` of mailcrm.yaml (relative to that file) unless `--dir`
is given. A template NAME exists when the renderer finds it: a folder `NAME/` in the templates
folder with at least one complete language (folders starting with `_` hold layouts).
The templates folder is `--templates DIR`, else the one the settings name
(`templates_dir`), else the templates shipped with mailcrm. A symlink in that folder
leading outside it is an error; a template whose body never shows `unsubscribe_url` is
a warning (the sender adds a one-line footer with the link to such emails). A template
file a rule uses that does not compile is an error naming its file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, err_console, info, print_json, table
from mailcrm.domain.rules import Rule, format_clock
from mailcrm.errors import MailcrmError
from mailcrm.render import TemplateRenderer
from mailcrm.rules_yaml import check_rules, load_rules

app = typer.Typer(help="Check and list the automated-email rules.", no_args_is_help=True)

DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Rules folder (default: rules_dir of mailcrm.yaml).")
]
TemplatesOption = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        help="Templates folder; a template NAME is a folder NAME/ in it "
        "(default: the templates folder of the settings).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


@dataclass(frozen=True)
class _Inputs:
    directory: Path
    templates: list[str]
    salespeople: list[str] | None
    renderer: TemplateRenderer | None = None


def template_names(folder: Path) -> list[str]:
    """The templates the renderer would find in `folder`, so `rules check` and sending agree."""
    if not folder.is_dir():
        return []
    return sorted(TemplateRenderer(folder).names())


def _template_syntax_errors(rules: list[Rule], renderer: TemplateRenderer | None) -> list[MailcrmError]:
    """Each template file a rule uses that does not compile, with its file and line."""
    if renderer is None:
        return []
    errors: list[MailcrmError] = []
    for name in dict.fromkeys(rule.template for rule in rules):
        try:
            errors += renderer.syntax_errors(name)
        except MailcrmError:  # unknown or refused template: reported as an error already
            continue
    return errors


def _unsubscribe_warnings(rules: list[Rule], renderer: TemplateRenderer | None) -> list[dict[str, Any]]:
    """Per rule, each language of its template whose body never shows `unsubscribe_url`."""
    if renderer is None:
        return []
    gaps: dict[str, list[tuple[str, list[str]]]] = {}
    warnings: list[dict[str, Any]] = []
    for rule in rules:
        if rule.template not in gaps:
            try:
                gaps[rule.template] = renderer.unsubscribe_gaps(rule.template)
            except MailcrmError:  # unknown or refused template: reported as an error already
                gaps[rule.template] = []
        file, _, line = rule.source.rpartition(":")
        for language, parts in gaps[rule.template]:
            named = " and ".join("HTML" if part == "html" else "text" for part in parts)
            warnings.append(
                {
                    "file": file,
                    "line": int(line) if line.isdigit() else None,
                    "rule": rule.name,
                    "template": rule.template,
                    "language": language,
                    "parts": parts,
                    "message": f"{rule.source}: rule {rule.name}: template {rule.template} ({language}) "
                    f"has no unsubscribe link in its {named} part; the sender adds a one-line footer "
                    "with the link (show {{ unsubscribe_url }} in the template to choose where)",
                }
            )
    return warnings


def _shown(path: Path) -> Path:
    """Relative to the working folder when inside it, so messages read `config/rules/a.yaml:7:15`."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _inputs(ctx: typer.Context, directory: Path | None, templates: Path | None) -> _Inputs:
    settings = app_context(ctx).settings
    folder = templates if templates is not None else settings.templates_path()
    if not folder.is_dir():
        info(f"note: templates folder {folder} not found; pass --templates DIR")
    salespeople: list[str] | None = [p.email for p in settings.salespeople]
    if settings.source is None:
        salespeople = None
        info("note: no configuration file, so owner and sender addresses are not checked")
    renderer = TemplateRenderer(folder) if folder.is_dir() else None
    return _Inputs(
        directory=directory if directory is not None else _shown(settings.base_dir / settings.rules_dir),
        templates=sorted(renderer.names()) if renderer is not None else [],
        salespeople=salespeople,
        renderer=renderer,
    )


def _row(rule: Rule) -> dict[str, Any]:
    file, _, line = rule.source.rpartition(":")
    return {
        "name": rule.name,
        "file": file,
        "line": int(line) if line.isdigit() else None,
        "kind": rule.trigger.key,
        "trigger": rule.trigger.describe(),
        "template": rule.template,
        "enabled": rule.enabled,
        "send_window": rule.send_window.describe() if rule.send_window else None,
        "send_time": format_clock(rule.send_time),
        "sender": rule.sender,
        "owner": rule.owner,
        "start": rule.start.isoformat() if rule.start else None,
        "end": rule.end.isoformat() if rule.end else None,
    }


def _problem(problem: MailcrmError) -> dict[str, Any]:
    return {
        "file": getattr(problem, "path", None),
        "line": getattr(problem, "line", None),
        "column": getattr(problem, "column", None),
        "field": getattr(problem, "field", None),
        "message": str(problem),
    }


@app.command("check")
def check(
    ctx: typer.Context,
    directory: DirOption = None,
    templates: TemplatesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate every rule file; exit 1 and list every problem when any file is wrong.

    Example: mailcrm --config config/mailcrm.yaml rules check
    """
    inputs = _inputs(ctx, directory, templates)
    rules, found = check_rules(
        inputs.directory, known_templates=inputs.templates, salespeople=inputs.salespeople
    )
    problems: list[MailcrmError] = [*found, *(inputs.renderer.refused() if inputs.renderer else [])]
    problems += _template_syntax_errors(list(rules.rules), inputs.renderer)
    warnings = _unsubscribe_warnings(list(rules.rules), inputs.renderer)
    if as_json:
        print_json(
            {
                "files": list(rules.files),
                "rules": [_row(rule) for rule in rules.rules],
                "errors": [_problem(problem) for problem in problems],
                "warnings": warnings,
            }
        )
    else:
        for warning in warnings:
            err_console.print(
                f"[yellow]warning:[/yellow] {escape(warning['message'])}", highlight=False, soft_wrap=True
            )
        for problem in problems:
            err_console.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
        if problems:
            info(f"{len(problems)} problem(s) in {inputs.directory}")
        else:
            info(f"{len(rules.rules)} rule(s) in {len(rules.files)} file(s): all valid")
    if problems:
        raise typer.Exit(1)


@app.command("list")
def list_rules(
    ctx: typer.Context,
    directory: DirOption = None,
    templates: TemplatesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the rules (refuses to when any rule file has a problem; see `rules check`).

    Example: mailcrm rules list --json
    """
    inputs = _inputs(ctx, directory, templates)
    rules = load_rules(inputs.directory, known_templates=inputs.templates, salespeople=inputs.salespeople)
    rows = [_row(rule) for rule in rules.rules]
    emit(
        as_json,
        rows,
        lambda: table(
            None,
            ["name", "when", "template", "window", "enabled", "source"],
            [
                [
                    row["name"],
                    row["trigger"],
                    row["template"],
                    row["send_window"] or "any time",
                    "yes" if row["enabled"] else "no",
                    f"{row['file']}:{row['line']}",
                ]
                for row in rows
            ],
        ),
    )
