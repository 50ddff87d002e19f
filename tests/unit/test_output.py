"""Terminal output: stored text is shown, never run by the terminal or read as markup."""

from __future__ import annotations

import io

import pytest

from mailcrm.cli import output
from mailcrm.cli.output import json_text, visible


def test_every_control_character_becomes_one_visible_symbol() -> None:
    controls = "".join(chr(code) for code in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)))
    shown = visible(controls)
    assert len(shown) == len(controls)
    assert shown.isprintable()
    assert visible("a\x1b[31mb\x00c\rd") == "a\u241b[31mb\u2400c\u240dd"
    assert visible("tab\tand\nnewline\r\nstay") == "tab\tand\nnewline\nstay"
    assert visible("สมศรี ใจดี 王芳 می\u200cخواهم") == "สมศรี ใจดี 王芳 می\u200cخواهم"


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What a colour terminal would receive from `output.console`."""
    buffer = io.StringIO()
    console = output._SafeConsole(file=buffer, force_terminal=True, color_system="standard", width=120)
    monkeypatch.setattr(output, "console", console)
    return buffer


def test_our_markup_is_styled_but_text_escape_sequences_are_not_sent(screen: io.StringIO) -> None:
    output.console.print("[bold]label[/bold] Evil\x1b]0;pwned\x07\x1b[2J", highlight=False)
    sent = screen.getvalue()
    assert "\x1b[1mlabel" in sent  # rich's own styling still reaches the terminal
    assert "\x1b]0;" not in sent and "\x1b[2J" not in sent and "\x07" not in sent
    assert "Evil\u241b]0;pwned" in sent


def test_table_cells_and_titles_are_plain_text(screen: io.StringIO) -> None:
    output.table("[bold red]T[/] \x1b[2J", ["name"], [["[bold red]x[/]\x9b31m"], [None]])
    sent = screen.getvalue()
    assert "[bold red]x[/]\ufffd31m" in sent and "[bold red]T[/] \u241b[2J" in sent
    assert "\x9b" not in sent and "\x1b[2J" not in sent


def test_json_escapes_what_a_terminal_would_act_on_and_keeps_the_data() -> None:
    text = json_text({"name": "a\x1b\x9b\x7fb 王"})
    assert text == '{"name": "a\\u001b\\u009b\\u007fb 王"}'
