"""`mailcrm suppress list|add` and `unsuppress` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, write_config

CONFIG = """\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
"""


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


def test_suppress_list_shows_addresses_of_customers_and_of_no_customer(cli: CLI, configured: Path) -> None:
    assert cli("customers", "add", "--name", "Ann Lee", "-e", "ann@x.example").code == 0
    assert cli("suppress", "add", "Ann@X.example", "--reason", "unsubscribed").code == 0
    # The older form, `suppress ADDRESS`, options before or after the address, still works.
    older = cli("suppress", "--reason", "asked by phone", "nobody@else.example", "--json")
    assert older.code == 0, older.stderr
    assert older.json() == {"address": "nobody@else.example", "suppressed": True, "added": True}

    listed = cli("suppress", "list", "--json")
    assert listed.code == 0, listed.stderr
    rows = listed.json()
    assert [(r["address"], r["reason"], r["customer_id"], r["customer_name"]) for r in rows] == [
        ("nobody@else.example", "asked by phone", None, None),
        ("ann@x.example", "unsubscribed", 1, "Ann Lee"),
    ]
    assert set(rows[0]) == {"address", "reason", "detail", "suppressed_at", "customer_id", "customer_name"}
    assert rows[0]["suppressed_at"].endswith("Z")

    text = cli("suppress", "list", "--search", "ann")
    assert text.code == 0 and "ann@x.example" in text.stdout and "Ann Lee (id 1)" in text.stdout
    assert "nobody@else.example" not in text.stdout
    assert cli("suppress", "list", "--reason", "complaint", "--json").json() == []
    none = cli("suppress", "list", "--reason", "complaint")
    assert none.code == 0 and "no suppressed address matches" in none.stderr

    removed = cli(
        "suppress", "remove", "ann@x.example", "--note", "wants the newsletter again", "--json",
        extra_env={"MAILCRM_USER": "alice@acme.example"},
    )  # fmt: skip
    assert removed.code == 0, removed.stderr
    assert removed.json() == {"address": "ann@x.example", "suppressed": False, "removed": True}
    assert [r["address"] for r in cli("suppress", "list", "--json").json()] == ["nobody@else.example"]
    (event,) = cli("timeline", "ann@x.example", "--json").json()
    assert event["kind"] == "unsuppressed"
    assert (
        event["summary"]
        == "email to ann@x.example allowed again (was unsubscribed): wants the newsletter again"
    )
    assert event["payload"]["by"] == "alice@acme.example"

    assert cli("unsuppress", "nobody@else.example").code == 0
    assert cli("suppress", "list", "--json").json() == []
    again = cli("unsuppress", "nobody@else.example")
    assert again.code == 0 and "was not suppressed" in again.stderr


def test_suppress_with_an_unknown_word_is_a_usage_error(cli: CLI, configured: Path) -> None:
    result = cli("suppress", "lst")
    assert result.code == 2 and "Did you mean 'list'?" in result.stderr
