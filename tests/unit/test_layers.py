"""The pure core stays pure: no IO library is imported under mailcrm/domain."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"aioimaplib", "aiosmtplib", "sqlmodel", "sqlalchemy", "starlette", "apscheduler", "logging"}


def test_domain_imports_no_io() -> None:
    root = Path(__file__).parents[2] / "mailcrm" / "domain"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
