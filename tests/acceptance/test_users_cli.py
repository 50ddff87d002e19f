"""`mailcrm users ...` as an administrator runs it: adding logins, passwords from stdin,
API tokens shown once, revoking, disabling, and the errors a typo or a script gets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailcrm.auth.login import Authenticator, Refusal, Refused
from mailcrm.domain.access import Principal, Role, Scope
from mailcrm.errors import AuthenticationError
from mailcrm.store.db import Database

from .conftest import CLI

CONFIG = """\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
  - name: Bob Chen
    email: bob@acme.example
"""
PASSWORD = "correct horse battery staple"
ADMIN = {"MAILCRM_USER": "root@acme.example"}


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def _clean_error(result_stderr: str) -> None:
    assert "Traceback" not in result_stderr


def test_add_users_then_list_them(cli: CLI, configured: Path) -> None:
    added = cli(
        "users", "add", "Alice@ACME.example", "--role", "salesperson", "--password-stdin", "--json",
        stdin=PASSWORD + "\n", extra_env=ADMIN,
    )  # fmt: skip
    assert added.code == 0, added.stderr
    assert added.json() == {
        "id": 1, "email": "alice@acme.example", "role": "salesperson", "salesperson": "alice@acme.example",
        "disabled": False,
    }  # fmt: skip
    admin = cli("users", "add", "root@acme.example", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert admin.code == 0 and "added user root@acme.example (admin)" in admin.stderr
    # An admin who also sells is tied to a salesperson by name.
    lead = cli(
        "users", "add", "lead@acme.example", "--role", "admin", "--salesperson", "bob@acme.example",
        "--password-stdin", stdin=PASSWORD,
    )  # fmt: skip
    assert lead.code == 0 and "salesperson bob@acme.example" in lead.stderr

    listed = cli("users", "list", "--json")
    assert listed.code == 0, listed.stderr
    rows = listed.json()
    assert [(r["email"], r["role"], r["salesperson"], r["disabled"]) for r in rows] == [
        ("alice@acme.example", "salesperson", "alice@acme.example", False),
        ("lead@acme.example", "admin", "bob@acme.example", False),
        ("root@acme.example", "admin", None, False),
    ]
    assert set(rows[0]) == {
        "id", "email", "role", "salesperson", "disabled", "created_at", "last_login_at", "active_tokens",
    }  # fmt: skip
    assert rows[0]["created_at"].endswith("Z") and rows[0]["last_login_at"] is None
    text = cli("users", "list")
    assert text.code == 0 and "alice@acme.example" in text.stdout and "salesperson" in text.stdout
    assert "argon2" not in listed.stdout + text.stdout  # never the hash

    # The password works for logging in (what the web dashboard will call).
    db = Database(f"sqlite:///{configured}/config/crm.db")
    try:
        found = Authenticator(db).authenticate("alice@acme.example", PASSWORD, "127.0.0.1")
        assert isinstance(found, Principal) and found.role is Role.SALESPERSON
    finally:
        db.dispose()
    with sqlite3.connect(configured / "config" / "crm.db") as conn:
        audit = conn.execute("SELECT actor, via, action, target FROM audit_log ORDER BY id").fetchall()
    assert audit[0] == ("root@acme.example", "cli", "user.add", "alice@acme.example")
    assert [row[2] for row in audit] == ["user.add"] * 3


REFUSALS = [
    (["ALICE@acme.example", "--role", "admin"], PASSWORD, "user 'alice@acme.example' exists already"),
    (["carol@acme.example", "--role", "salesperson"], PASSWORD, "unknown salesperson 'carol@acme.example'"),
    (["x@acme.example", "--role", "admin", "--salesperson", "alice@acme.example"], PASSWORD,
     "salesperson 'alice@acme.example' has a login already"),
    (["bob@acme.example", "--role", "salesperson"], "", "standard input is empty, no password was given"),
    (["bob@acme.example", "--role", "salesperson"], "short\n", "too short: use at least 12 characters"),
    (["bob@acme.example", "--role", "salesperson"], "BOB@acme.example\n", "it is the account's email"),
    (["bob@acme.example", "--role", "salesperson"], "line one is long\nline two\n", "on one line"),
    (["not-an-address", "--role", "admin"], PASSWORD, "invalid email address"),
]  # fmt: skip


def test_add_refuses_with_a_message_naming_the_problem(cli: CLI, configured: Path) -> None:
    """Each refusal exits 1 with one line saying what is wrong, and adds nothing."""
    first = cli(
        "users", "add", "alice@acme.example", "--role", "salesperson", "--password-stdin", stdin=PASSWORD
    )
    assert first.code == 0, first.stderr
    for args, stdin, message in REFUSALS:
        result = cli("users", "add", *args, "--password-stdin", stdin=stdin)
        assert result.code == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        _clean_error(result.stderr)
    assert [r["email"] for r in cli("users", "list", "--json").json()] == ["alice@acme.example"]


def test_usage_errors_exit_2(cli: CLI, configured: Path) -> None:
    no_tty = cli("users", "add", "bob@acme.example", "--role", "salesperson", stdin="")
    assert no_tty.code == 2 and "no terminal to ask for the password on" in no_tty.stderr
    bad_role = cli("users", "add", "bob@acme.example", "--role", "owner", "--password-stdin", stdin=PASSWORD)
    assert bad_role.code == 2 and "'owner' is not one of" in bad_role.stderr
    no_role = cli("users", "add", "bob@acme.example", "--password-stdin", stdin=PASSWORD)
    assert no_role.code == 2 and "--role" in no_role.stderr
    bad_scope = cli("users", "token", "bob@acme.example", "--scope", "admin")
    assert bad_scope.code == 2 and "'admin' is not one of" in bad_scope.stderr
    too_long = cli("users", "token", "bob@acme.example", "--scope", "read", "--expires", "3651")
    assert too_long.code == 2 and "--expires" in too_long.stderr and "3650" in too_long.stderr
    for result in (no_tty, bad_role, no_role, bad_scope, too_long):
        _clean_error(result.stderr)


def test_a_token_is_shown_once_listed_by_prefix_and_revoked(cli: CLI, configured: Path) -> None:
    assert (
        cli(
            "users", "add", "alice@acme.example", "--role", "salesperson", "--password-stdin", stdin=PASSWORD
        ).code
        == 0
    )
    made = cli(
        "users", "token", "alice@acme.example", "--scope", "write", "--expires", "30", "--label", "shop"
    )
    assert made.code == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("mcrm_") and len(secret) == 54 and "\n" not in secret
    prefix = secret[:13]
    assert (
        f"{prefix} for alice@acme.example (write, expires" in made.stderr and "only this once" in made.stderr
    )
    as_json = cli("users", "token", "alice@acme.example", "--scope", "read", "--json").json()
    assert (
        as_json["secret"].startswith("mcrm_") and as_json["scope"] == "read" and as_json["state"] == "active"
    )

    listed = cli("users", "tokens", "alice@acme.example", "--json")
    assert listed.code == 0, listed.stderr
    rows = listed.json()
    assert [(r["token"], r["scope"], r["label"], r["state"]) for r in rows] == [
        (as_json["token"], "read", None, "active"),
        (prefix, "write", "shop", "active"),
    ]
    text = cli("users", "tokens", "alice@acme.example")
    for output in (listed.stdout, text.stdout):
        assert secret not in output and secret[14:] not in output
    # Nothing in the database holds the secret itself.
    assert secret[14:].encode() not in (configured / "config" / "crm.db").read_bytes()
    assert cli("users", "list", "--json").json()[0]["active_tokens"] == 2

    db = Database(f"sqlite:///{configured}/config/crm.db")
    try:
        auth = Authenticator(db)
        assert auth.check_token(secret, Scope.WRITE).email == "alice@acme.example"
        revoked = cli("users", "revoke", prefix, "--json", extra_env=ADMIN)
        assert revoked.code == 0, revoked.stderr
        assert revoked.json()["state"] == "revoked" and revoked.json()["changed"] is True
        with pytest.raises(AuthenticationError):
            auth.check_token(secret, Scope.READ)
    finally:
        db.dispose()
    again = cli("users", "revoke", prefix[5:])
    assert again.code == 0 and "was revoked already" in again.stderr
    unknown = cli("users", "revoke", "mcrm_zzzzzzzz")
    assert unknown.code == 1 and "no token mcrm_zzzzzzzz" in unknown.stderr
    garbage = cli("users", "revoke", "'; DROP TABLE api_token; --")
    assert garbage.code == 1 and "not a token prefix" in garbage.stderr
    _clean_error(unknown.stderr + garbage.stderr)
    states = {r["token"]: r["state"] for r in cli("users", "tokens", "alice@acme.example", "--json").json()}
    assert states == {prefix: "revoked", as_json["token"]: "active"}

    with sqlite3.connect(configured / "config" / "crm.db") as conn:
        audit = conn.execute("SELECT actor, action, target FROM audit_log ORDER BY id").fetchall()
    assert [row[1] for row in audit] == ["user.add", "token.create", "token.create", "token.revoke"]
    assert audit[-1][0] == "root@acme.example"


def test_passwd_disable_and_enable(cli: CLI, configured: Path) -> None:
    assert (
        cli(
            "users", "add", "bob@acme.example", "--role", "salesperson", "--password-stdin", stdin=PASSWORD
        ).code
        == 0
    )
    changed = cli(
        "users", "passwd", "BOB@acme.example", "--password-stdin", "--json", stdin="a brand new passphrase\n"
    )
    assert changed.code == 0, changed.stderr
    assert changed.json()["email"] == "bob@acme.example"
    weak = cli("users", "passwd", "bob@acme.example", "--password-stdin", stdin="tiny")
    assert weak.code == 1 and "too short" in weak.stderr
    missing = cli("users", "passwd", "nobody@acme.example", "--password-stdin", stdin=PASSWORD)
    assert missing.code == 1 and "no user 'nobody@acme.example'" in missing.stderr

    disabled = cli("users", "disable", "bob@acme.example", "--json")
    assert disabled.code == 0 and disabled.json()["disabled"] is True and disabled.json()["changed"] is True
    again = cli("users", "disable", "bob@acme.example")
    assert again.code == 0 and "was disabled already" in again.stderr
    token = cli("users", "token", "bob@acme.example", "--scope", "read")
    assert token.code == 1 and "is disabled" in token.stderr

    db = Database(f"sqlite:///{configured}/config/crm.db")
    try:
        auth = Authenticator(db)
        assert auth.authenticate("bob@acme.example", "a brand new passphrase", "127.0.0.1") == Refused(
            Refusal.DISABLED
        )
        enabled = cli("users", "enable", "bob@acme.example")
        assert enabled.code == 0 and "bob@acme.example enabled" in enabled.stderr
        assert isinstance(
            auth.authenticate("bob@acme.example", "a brand new passphrase", "127.0.0.1"), Principal
        )
        assert auth.authenticate("bob@acme.example", PASSWORD, "127.0.0.1") == Refused(Refusal.INVALID)
    finally:
        db.dispose()
    rows = cli("users", "list", "--json").json()
    assert rows[0]["last_login_at"] is not None and rows[0]["disabled"] is False
