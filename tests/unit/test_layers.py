"""The import graph keeps its layers: the pure core imports no IO, the IMAP and SMTP shells
know nothing of the database or of the code that uses them, and each network library is
imported by its one shell only (so sending goes through `mailcrm.smtp`, syncing through
`mailcrm.imap`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "mailcrm"

FORBIDDEN = {"aioimaplib", "aiosmtplib", "sqlmodel", "sqlalchemy", "starlette", "apscheduler", "logging"}

# What the protocol shells must not import: the database, and every layer above them.
ABOVE_SHELLS = {
    "sqlmodel",
    "sqlalchemy",
    "mailcrm.store",
    "mailcrm.send",
    "mailcrm.sync",
    "mailcrm.cli",
    "mailcrm.daemon",
    "mailcrm.planner",
    "mailcrm.demo",
    "mailcrm.render",
}


def _imports(folder: Path) -> list[tuple[Path, str]]:
    """Every module name imported by a file under ``folder`` (relative imports resolved)."""
    found: list[tuple[Path, str]] = []
    for path in sorted(folder.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = module.split(".")[: -node.level]
                    base = ".".join([*parent, base] if base else parent)
                found += [(path, base)]
                found += [(path, f"{base}.{alias.name}") for alias in node.names]
    return found


def _under(name: str, roots: set[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def test_domain_imports_no_io() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path, name in _imports(PACKAGE / "domain")
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []


def test_imap_and_smtp_shells_import_neither_the_database_nor_their_users() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for shell in ("imap", "smtp")
        for path, name in _imports(PACKAGE / shell)
        if _under(name, ABOVE_SHELLS)
    ]
    assert offenders == []


def test_each_network_library_is_imported_by_its_shell_only() -> None:
    homes = {"aiosmtplib": PACKAGE / "smtp", "aioimaplib": PACKAGE / "imap"}
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path, name in _imports(PACKAGE)
        for library, home in homes.items()
        if _under(name, {library}) and home not in path.parents
    ]
    assert offenders == []


def test_imap_commands_take_the_connection_rather_than_extend_it() -> None:
    """`ImapClient` owns a `Connection` and delegates (composition): no class in imap/ is
    built on `Connection`, and the client inherits from nothing."""
    from mailcrm.imap.client import ImapClient

    subclasses = [
        f"{path.name}: {node.name}"
        for path in sorted((PACKAGE / "imap").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "Connection" for base in node.bases)
    ]
    assert subclasses == []
    assert ImapClient.__bases__ == (object,)
