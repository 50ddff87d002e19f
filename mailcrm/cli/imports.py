"""Shared shell for CSV imports: a progress bar over the file, then the report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mailcrm.cli.output import err_console, print_json, table
from mailcrm.errors import ImportFileError
from mailcrm.textfile import file_kind

_SHOWN_ERRORS = 50


class Report(Protocol):
    errors: list[Any]
    ignored_columns: list[str]

    def to_json(self) -> dict[str, Any]: ...


ProgressCallback = Callable[[int, int], None]


def run_import(file: Path, as_json: bool, job: Callable[[ProgressCallback], Report]) -> None:
    """Run `job` with a progress bar (unless output is JSON or not a terminal), print the report.

    Exits 1 when any row was refused, so scripts notice; the valid rows are imported anyway.
    """
    if not file.exists():
        raise ImportFileError(f"{file}: no such file")
    if not file.is_file():
        raise ImportFileError(
            f"{file}: {file_kind(file.stat().st_mode)}, not a CSV file", hint="give the path of a .csv file"
        )
    total = file.stat().st_size
    show_bar = not as_json and err_console.is_terminal
    with Progress(
        TextColumn("[bold]importing[/bold] {task.fields[rows]} rows"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show_bar,
        transient=True,
    ) as progress:
        task = progress.add_task("import", total=total or 1, rows=0)

        def on_progress(rows: int, done: int) -> None:
            progress.update(task, completed=done, rows=rows)

        report = job(on_progress)
    data = report.to_json()
    if as_json:
        print_json(data)
    else:
        _print_report(data)
    if report.errors:
        raise SystemExit(1)


def _print_report(data: dict[str, Any]) -> None:
    counts = ", ".join(
        f"{data[key]} {key}" for key in ("created", "updated", "unchanged", "skipped") if key in data
    )
    # File names and headers come from the user's file: plain text, never markup.
    err_console.print(f"{data['file']}: {data['rows']} rows: {counts}", highlight=False, markup=False)
    if data.get("ignored_columns"):
        columns = ", ".join(data["ignored_columns"])
        err_console.print(
            f"ignored columns: {columns} (map one with --map 'Header=field' or --map 'Header=custom.name')",
            highlight=False,
            markup=False,
        )
    for warning in data.get("warnings") or []:
        line = f"[yellow]warning:[/yellow] line {warning['row']}: {escape(warning['reason'])}"
        err_console.print(line, highlight=False, soft_wrap=True)
    errors = data.get("errors") or []
    if errors:
        err_console.print(f"[red]{data.get('failed', len(errors))} rows refused:[/red]")
        table(None, ["line", "reason"], [[e["row"], e["reason"]] for e in errors[:_SHOWN_ERRORS]])
        if len(errors) > _SHOWN_ERRORS:
            err_console.print(f"... and {len(errors) - _SHOWN_ERRORS} more (use --json for all)")
    sys.stderr.flush()
