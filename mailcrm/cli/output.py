"""Printing: JSON for scripts (stable field names), rich tables and text for people.

Everything printed comes from `console` and `err_console`, which show control
characters as visible symbols (ESC as ␛, NUL as ␀; bidi overrides as �): a customer
name, an email subject or an error quoting a CSV cell can never move the cursor,
recolour or retitle the terminal, or reverse the text after it. Table cells and status
lines are plain text, never rich markup, so a name like `[bold red]x[/]` prints as
written. JSON escapes what a terminal would run too.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

JSON_HELP = "Print JSON (stable field names; see the README) instead of text."

# C0 controls (tab and line feed excepted), DEL and C1 controls such as the 8-bit CSI, and
# the bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): a
# name holding U+202E would show the rest of its line, later columns included, reversed
# ("Trojan Source"). Right-to-left text needs none of them; the marks U+200E/U+200F stay.
_CONTROL = re.compile("\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What JSON with ensure_ascii=False leaves raw that a terminal would act on.
_JSON_RAW_CONTROL = re.compile("[\x7f-\x9f]")


def _picture(match: re.Match[str]) -> str:
    """One visible character for one control character, so layouts keep their widths."""
    char = match.group()
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ ␛ ␍ ...
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"  # C1 controls and bidi overrides have no pictures


def visible(text: str) -> str:
    """`text` with every control character but tab and line feed shown as a symbol."""
    return _CONTROL.sub(_picture, text)


class _SafeConsole(Console):
    """A rich console that never sends a control character it was given as text.

    Every string rich prints, tables and progress bars included, passes through
    `render_str`; rich's own colour and cursor codes are made later and are unaffected.
    """

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(visible(text), **options)


console: Console = _SafeConsole()
err_console: Console = _SafeConsole(stderr=True)


def to_jsonable(value: Any) -> Any:
    """Models and lists of models become plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    return value


def json_text(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON, non-ASCII text as is, but DEL and C1 controls as `\\u` escapes
    (JSON escapes C0 controls itself; the data is the same either way)."""
    text = json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent, default=str)
    return _JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json(value: Any) -> None:
    """Write JSON to stdout without rich's markup or wrapping."""
    sys.stdout.write(json_text(value, indent=2))
    sys.stdout.write("\n")


def emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    """Print `value` as JSON, or call `human` to print it for people."""
    if as_json:
        print_json(value)
    else:
        human()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table of data: title and cells are plain text (no markup), controls made visible."""
    grid = Table(title=None if title is None else Text(visible(title)), show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(Text("" if cell is None else visible(str(cell))) for cell in row))
    console.print(grid)


def info(message: str) -> None:
    """A status line for people (stderr, so stdout stays clean for data); plain text."""
    err_console.print(message, highlight=False, markup=False)
