"""`mailcrm/imap/protocol.py` overrides private methods of aioimaplib's protocol class. These
tests pin what those overrides were written against, so a new aioimaplib release that
renames, reshapes or stops calling them fails here, loudly, instead of silently bypassing
the fixes (names with ``*`` corrupted, VANISHED lost, RecursionError on big FETCHes)."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from aioimaplib.aioimaplib import Command, FetchCommand, IMAP4ClientProtocol

from mailcrm.imap.protocol import _FetchCommand, _Protocol

OVERRIDES = "mailcrm/imap/protocol.py"
_EMPTY = inspect.Parameter.empty
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD

# name -> (parameters as (name, kind, default), who calls it upstream, what the override fixes)
SHAPES = {
    "_untagged_response": (
        [("self", _POSITIONAL, _EMPTY), ("line", _POSITIONAL, _EMPTY)],
        "_handle_line",
        "untagged-line routing (names keep their '* ', VANISHED goes to its FETCH)",
    ),
    "_handle_responses": (
        [
            ("self", _POSITIONAL, _EMPTY),
            ("data", _POSITIONAL, _EMPTY),
            ("line_handler", _POSITIONAL, _EMPTY),
            ("current_cmd", _POSITIONAL, None),
        ],
        "data_received",
        "the response loop without recursion or re-slicing",
    ),
}


def _pinned() -> str:
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [m.group(1) for d in dependencies if (m := re.fullmatch(r"aioimaplib==([\w.]+)", d.strip()))]
    assert pins, f"pyproject.toml must pin aioimaplib exactly (==X.Y.Z): {OVERRIDES} overrides its privates"
    return pins[0]


def _shape(function: object) -> list[tuple[str, inspect._ParameterKind, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_the_installed_aioimaplib_is_the_pinned_release() -> None:
    pinned, installed = _pinned(), version("aioimaplib")
    assert installed == pinned, (
        f"aioimaplib {installed} is installed but pyproject.toml pins {pinned}, the release the "
        f"overrides in {OVERRIDES} were written against; install the pinned release, or check those "
        "overrides against the new one and move the pin and tests/unit/test_imap_protocol_shape.py together"
    )


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_overridden_private_method_still_exists_with_the_same_shape(name: str) -> None:
    expected, _, fixes = SHAPES[name]
    release = version("aioimaplib")
    upstream = IMAP4ClientProtocol.__dict__.get(name)
    assert upstream is not None, (
        f"aioimaplib {release} no longer defines IMAP4ClientProtocol.{name}, which {OVERRIDES} "
        f"(_Protocol.{name}) overrides for {fixes}: find where that moved, port the override "
        "(or drop it if upstream now does the same), then update the pin"
    )
    assert _shape(upstream) == expected, (
        f"aioimaplib {release} changed IMAP4ClientProtocol.{name} to {inspect.signature(upstream)}; "
        f"_Protocol.{name} in {OVERRIDES} was written for {[p[0] for p in expected]} ({fixes}): "
        "re-read the upstream method and port the override before moving the pin"
    )
    ours = _shape(_Protocol.__dict__[name])
    assert ours == expected, f"_Protocol.{name} in {OVERRIDES} no longer matches upstream's parameters"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_upstream_still_calls_each_overridden_method(name: str) -> None:
    """An override nobody calls any more would silently stop fixing anything."""
    _, caller, fixes = SHAPES[name]
    source = inspect.getsource(getattr(IMAP4ClientProtocol, caller))
    assert f"self.{name}(" in source, (
        f"aioimaplib {version('aioimaplib')}: IMAP4ClientProtocol.{caller} no longer calls "
        f"self.{name}(), so _Protocol.{name} in {OVERRIDES} ({fixes}) would be bypassed"
    )


async def test_the_fetch_completion_check_still_finds_the_response_lines() -> None:
    """`_FetchCommand.wait_data` reads upstream's `_resp_lines` and `FETCH_MESSAGE_DATA_RE`."""
    assert "wait_data" in FetchCommand.__dict__, f"FetchCommand.wait_data, replaced in {OVERRIDES}, is gone"
    assert isinstance(getattr(FetchCommand, "FETCH_MESSAGE_DATA_RE", None), re.Pattern), (
        f"aioimaplib {version('aioimaplib')}: FetchCommand.FETCH_MESSAGE_DATA_RE, used by "
        f"_FetchCommand.wait_data in {OVERRIDES}, is gone"
    )
    command = _FetchCommand("A1", "1:*", "(UID)", prefix="UID", loop=asyncio.get_running_loop())
    command.append_to_resp(b"1 FETCH (UID 7")
    assert getattr(command, "_resp_lines", None) == [b"1 FETCH (UID 7"], (
        f"aioimaplib {version('aioimaplib')}: Command no longer keeps its lines in _resp_lines, "
        f"which _FetchCommand.wait_data in {OVERRIDES} reads"
    )
    assert command.wait_data()  # the "(" is still open
    command.append_to_resp(b")")
    assert not command.wait_data()
    assert issubclass(_FetchCommand, Command)
