"""The import graph keeps its layers: the pure core imports no IO, the IMAP and SMTP shells
know nothing of the database or of the code that uses them, only the edges read the
configuration model, and each network library is imported by its one shell only (so
sending goes through `mailcrm.smtp`, syncing through `mailcrm.imap`)."""

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


def test_auth_serves_the_web_layer_and_the_cli_without_importing_them() -> None:
    """`mailcrm.auth` sits below the doors that call it (web, cli) and beside the mail shells."""
    above = {"mailcrm.web", "mailcrm.cli", "mailcrm.daemon", "mailcrm.send", "mailcrm.sync", "mailcrm.demo"}
    offenders = [f"{path.name}: {name}" for path, name in _imports(PACKAGE / "auth") if _under(name, above)]
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


# Who may read the configuration model (`mailcrm.settings`), by top-level module or
# package, and why. Everything else takes the small typed part it needs (an `ImapParams`,
# an `SmtpParams`, the team, a `SyncPolicy`), which these edges cut with `mailcrm.wiring`.
SETTINGS_READERS = {
    "settings.py": "the configuration model itself",
    "wiring.py": "cuts the settings into the typed parts the shells take",
    "daemon.py": "the composition root of `mailcrm run`",
    "cli": "the commands load the settings and wire what they run",
    "demo": "the composition root of `mailcrm demo`: writes a config, then runs the daemon on it",
    "send": "sharing.py and processes.py only, which cut each sender's SenderConfig (test_send_layers.py)",
    "planner.py": "not yet cut: the planner still takes the whole Settings",
    "web": "the HTTP edge: takes its `WebSettings` slice (listen address, limits, key sources)",
}


def test_only_the_edges_read_the_settings() -> None:
    """The shells (imap, smtp, store, sync) and the core never import `mailcrm.settings`:
    they take plain typed arguments, so they do not change when the file's layout does. A
    module that truly must read the settings is named in `SETTINGS_READERS`, with why."""
    offenders = sorted(
        f"{path.relative_to(PACKAGE)}: {name}"
        for path, name in _imports(PACKAGE)
        if _under(name, {"mailcrm.settings"}) and path.relative_to(PACKAGE).parts[0] not in SETTINGS_READERS
    )
    assert offenders == []


def test_the_shells_are_not_allowed_to_read_the_settings() -> None:
    """The allow-list above cannot quietly grow to cover a shell."""
    assert {"imap", "smtp", "store", "sync", "domain", "oauth.py", "netpolicy.py"}.isdisjoint(
        SETTINGS_READERS
    )


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


# Outside store/, the database is reached through store functions only. The one name
# allowed from the database libraries is `sqlmodel.Session`: the handle those functions
# take (a type for annotations; it builds no SQL).
DATABASE_LIBRARIES = {"sqlmodel", "sqlalchemy"}
ALLOWED_DATABASE_NAMES = {"sqlmodel.Session"}
# What only the store may do with a session or connection: run statements, read or write
# rows through the ORM, reach the driver.
SESSION_CALLS = {
    "exec", "execute", "exec_driver_sql", "scalar", "scalars", "scalar_one", "get", "add",
    "add_all", "delete", "merge", "flush", "commit", "refresh", "connection",
}  # fmt: skip
# Calls no shell but the store makes whatever their receiver is named.
DRIVER_CALLS = {"exec_driver_sql", "raw_connection"}


def _sessions(tree: ast.AST) -> set[str]:
    """Names that hold a session: `with x.read() as s` / `with x.write() as s`, and
    parameters annotated `Session`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            call = node.context_expr
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                if call.func.attr in ("read", "write"):
                    names.add(node.optional_vars.id)
            elif isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "scan":
                names.add(node.optional_vars.id)
        elif isinstance(node, ast.arg) and node.annotation and "Session" in ast.unparse(node.annotation):
            names.add(node.arg)
    return names


def _database_use(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sessions = _sessions(tree)
    where = path.relative_to(PACKAGE)
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            engine = isinstance(node, ast.Attribute) and node.attr == "engine"
            if engine and ast.unparse(node) != "self.engine":
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            continue
        method, receiver = node.func.attr, node.func.value
        on_session = isinstance(receiver, ast.Name) and receiver.id in sessions
        if method in DRIVER_CALLS or (on_session and method in SESSION_CALLS):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node.func)}()")
    return found


def test_sql_runs_in_the_store_only() -> None:
    """No module outside `mailcrm/store/` builds a query (imports from sqlalchemy or sqlmodel
    other than the `Session` type), runs one on a session, or reaches the engine or the
    driver: every read and write is a store function named after what it answers."""
    outside = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if (PACKAGE / "store") not in path.parents and ".venv" not in path.parts
    ]
    imports = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path, name in _imports(PACKAGE)
        if path in outside
        and _under(name, DATABASE_LIBRARIES)
        and name not in ALLOWED_DATABASE_NAMES
        and name not in {n.rpartition(".")[0] for n in ALLOWED_DATABASE_NAMES}
    ]
    assert imports == []
    assert [use for path in outside for use in _database_use(path)] == []


# The store functions that take the `Database` (they own their transactions) or a
# `Connection` (store-internal driver helpers), as `mailcrm/store/__init__.py` states.
OWN_TRANSACTIONS = {
    "candidates": {"scan"},
    "importer": {"import_customers", "import_purchases"},
    "migrate": {"current_revision", "upgrade", "drift", "schema", "ensure_ready"},
    "outbox.admin": {"retry", "cancel"},
    "outbox.claims": {"claim", "extend_lease", "release"},
    "outbox.facts": {"sent_since", "soft_bounces"},
    "outbox.outcomes": {
        *("mark_sending", "mark_sent", "mark_retry", "mark_failed", "mark_unknown", "mark_skipped"),
        *("defer", "skip_late"),
    },
    "outbox.recording": {"record"},
}
DRIVER_HELPERS = {
    "importer.bulk": {"enlarge_page_cache", "rows_where_in", "customers_by_address", "insert_rows"},
    "purchases": {"customer_zones", "promote_leads"},
}
HANDLES = {"Session", "Database", "Connection"}


def test_store_functions_take_a_session_unless_they_own_their_transactions() -> None:
    """The handle rule of `mailcrm/store/__init__.py`: a public store function takes a
    `Session`; the `Database` only where it owns its transactions, a `Connection` only in
    the store-internal driver helpers. A new exception has to be named here, with why."""
    store = PACKAGE / "store"
    found: dict[str, dict[str, set[str]]] = {"Database": {}, "Connection": {}}
    for path in sorted(store.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(store).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or not node.args.args:
                continue
            first = node.args.args[0].annotation
            kinds = {name for name in HANDLES if first is not None and name in ast.unparse(first)}
            for kind in kinds - {"Session"}:
                found[kind].setdefault(module, set()).add(node.name)
            assert len(kinds) <= 1, f"{module}.{node.name} takes one kind of handle, not {kinds}"
    assert found["Database"] == OWN_TRANSACTIONS
    assert found["Connection"] == DRIVER_HELPERS
