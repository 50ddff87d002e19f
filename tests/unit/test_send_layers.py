"""The sender runs with the slices of the configuration it needs (`SenderConfig`), so a
change elsewhere in the configuration model cannot reach it: inside `mailcrm/send/` only
`processes.py` and `sharing.py`, where the configuration file is read and cut into each
sender process's part, import the whole `Settings`. Each
module of the package logs under its own name."""

from __future__ import annotations

import ast
from pathlib import Path

SEND = Path(__file__).parents[2] / "mailcrm" / "send"


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_only_the_process_edge_reads_the_whole_settings() -> None:
    readers = sorted(
        path.name
        for path in SEND.glob("*.py")
        if {"mailcrm.settings.Settings", "mailcrm.settings.load_settings"} & _imported_names(path)
    )
    assert readers == ["processes.py", "sharing.py"]


def test_each_module_logs_under_its_own_name() -> None:
    borrowed = [
        path.name
        for path in SEND.glob("*.py")
        if "getLogger(" in (text := path.read_text(encoding="utf-8"))
        and "getLogger(__name__)" not in text
        and path.name != "processes.py"  # runs as __main__ in a child: names itself
    ]
    assert borrowed == []
