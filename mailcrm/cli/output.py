"""Printing: JSON for scripts (stable field names), rich tables and text for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

JSON_HELP = "Print JSON (stable field names; see the README) instead of text."


def to_jsonable(value: Any) -> Any:
    """Models and lists of models become plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    return value


def print_json(value: Any) -> None:
    """Write JSON to stdout without rich's markup or wrapping."""
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2, default=str))
    sys.stdout.write("\n")


def emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    """Print `value` as JSON, or call `human` to print it for people."""
    if as_json:
        print_json(value)
    else:
        human()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(grid)


def info(message: str) -> None:
    """A status line for people (stderr, so stdout stays clean for data)."""
    err_console.print(message, highlight=False)
