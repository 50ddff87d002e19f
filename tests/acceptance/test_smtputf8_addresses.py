"""An address with a non-ASCII local part is kept, with a warning that it needs SMTPUTF8."""

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

NOTE = (
    "has a non-ASCII local part: it is kept, but emails to it go out only through an SMTP server "
    "that offers SMTPUTF8"
)


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


def test_customers_add_warns_and_keeps_the_address(cli: CLI, configured: Path) -> None:
    added = cli("customers", "add", "--name", "Üla", "-e", "Üser@Example.org", "--json")
    assert added.code == 0, added.stderr
    assert added.json()["email"] == "üser@example.org"
    assert f"warning: üser@example.org {NOTE}" in added.stderr
    plain = cli("customers", "add", "--name", "Ann", "-e", "ann@example.org")
    assert plain.code == 0 and "warning" not in plain.stderr


def test_csv_import_lists_the_row_as_a_warning(cli: CLI, configured: Path) -> None:
    (configured / "leads.csv").write_text(
        "name,email\nAnn,ann@example.org\nÜla,üser@example.org\n", encoding="utf-8"
    )
    text = cli("customers", "import", "leads.csv")
    assert text.code == 0, text.stderr
    assert f"warning: line 3: üser@example.org {NOTE}" in text.stderr
    again = cli("customers", "import", "leads.csv", "--json")
    assert again.code == 0
    report = again.json()
    assert report["errors"] == []
    assert report["warnings"] == [
        {"row": 3, "reason": f"üser@example.org {NOTE} (elsewhere they fail with that reason)"}
    ]
