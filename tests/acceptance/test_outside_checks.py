"""Hostile inputs met from outside, one command each, as a new user or an attacker would
try them: a template that does not compile, a file that never ends, a device where a
file should be, control characters in a note. Each ends in one line naming the place,
never a traceback, a hang or memory exhaustion; where the store matters, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .conftest import CLI

CONFIG = """\
database:
  url: {url}
defaults:
  timezone: Asia/Bangkok
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
rules_dir: rules
templates_dir: templates
"""

RULES = """\
rules:
  - name: thank-you
    when: {after: purchase, wait: 1d}
    template: thank_you
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A config in `tmp_path/config` whose database is an empty SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        url = "sqlite:///crm.db"
    else:
        url = str(request.getfixturevalue("postgres_url"))
        _drop_schema(url)
    _write_config(tmp_path, url)
    yield request.param
    if request.param == "postgres":
        _drop_schema(url)


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    """A SQLite store, for what does not depend on the store."""
    _write_config(tmp_path, "sqlite:///crm.db")
    return tmp_path


def _write_config(tmp_path: Path, url: str) -> None:
    (tmp_path / "config" / "rules").mkdir(parents=True)
    (tmp_path / "config" / "mailcrm.yaml").write_text(CONFIG.format(url=url), encoding="utf-8")
    (tmp_path / "config" / "rules" / "alice.yaml").write_text(RULES, encoding="utf-8")
    folder = tmp_path / "config" / "templates" / "thank_you"
    folder.mkdir(parents=True)
    (folder / "en.subject.j2").write_text("Thank you", encoding="utf-8")
    (folder / "en.txt.j2").write_text("Thanks!\n\n{{ unsubscribe_url }}\n", encoding="utf-8")


def _drop_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def test_rules_check_names_a_template_that_does_not_compile(cli: CLI, configured: Path) -> None:
    """A rule's template with a Jinja2 syntax error is an error at file:line, not a traceback."""
    body = configured / "config" / "templates" / "thank_you" / "en.txt.j2"
    body.write_text("Thanks!\n{% for x in y %}never closed\n", encoding="utf-8")
    result = cli("--config", "config/mailcrm.yaml", "rules", "check")
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "templates/thank_you/en.txt.j2:2: syntax error" in result.stderr
    data = cli("--config", "config/mailcrm.yaml", "rules", "check", "--json").json()
    assert [(error["file"], error["line"]) for error in data["errors"]] == [
        ("templates/thank_you/en.txt.j2", 2)
    ]
