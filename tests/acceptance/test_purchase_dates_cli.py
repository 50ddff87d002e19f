"""`purchases add --date` and `purchases import` as a user sees them: a date without a time is
the customer's calendar date (plan, timeline), and impossible dates are usage errors.

Runs on SQLite and on PostgreSQL (`MAILCRM_DATABASE_URL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mailcrm.store.db import Database

from .conftest import CLI, Result

CONFIG = """\
database:
  url: sqlite:///crm.db
defaults:
  timezone: UTC
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
"""

RULES = """\
send_time: "10:00"
rules:
  - name: anniversary
    when: {anniversary_of: first_purchase}
    send_window: any
    template: anniversary
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment for the CLI: the configured SQLite file, or an empty PostgreSQL schema."""
    if request.param == "sqlite":
        yield {}
        return
    url = str(request.getfixturevalue("postgres_url"))
    database = Database(url)
    _empty(database)
    yield {"MAILCRM_DATABASE_URL": url}
    _empty(database)
    database.dispose()


def _empty(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture
def crm(cli: CLI, tmp_path: Path, store_env: dict[str, str]) -> CLI:
    """The CLI on a configured installation with an anniversary rule."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "config" / "rules").mkdir()
    (tmp_path / "config" / "rules" / "team.yaml").write_text(RULES, encoding="utf-8")

    def run(*args: str) -> Result:
        return cli(*args, extra_env=store_env)

    return run


def _customer(crm: CLI, email: str, zone: str) -> None:
    added = crm("customers", "add", "--name", email.partition("@")[0], "-e", email, "--timezone", zone)
    assert added.code == 0, added.stderr


def test_purchases_add_date_is_the_customers_calendar_day(crm: CLI) -> None:
    _customer(crm, "hono@x.example", "Pacific/Honolulu")
    _customer(crm, "tehran@x.example", "Asia/Tehran")
    for who, day in (("hono@x.example", "2021-12-31"), ("tehran@x.example", "2021-03-22")):
        bought = crm("purchases", "add", who, "--product", "Panel", "--amount", "100", "--date", day)
        assert bought.code == 0, bought.stderr

    planned = crm("plan", "--at", "2022-03-01T00:00", "--days", "366", "--json")
    assert planned.code == 0, planned.stderr
    assert [(p["customer"], p["occurrence"], p["due_at"][:16]) for p in planned.json()] == [
        ("tehran@x.example", "year:2022", "2022-03-22T05:30"),  # 10:00 +04:30, the DST day
        ("hono@x.example", "year:2022", "2022-12-31T20:00"),  # 10:00 -10:00, Dec 31
    ]

    shown = crm("timeline", "hono@x.example")
    assert shown.code == 0, shown.stderr
    assert "2021-12-31 (local date)" in shown.stdout
    entry = crm("timeline", "hono@x.example", "--json").json()[0]
    assert (entry["payload"]["date"], entry["payload"]["has_time"]) == ("2021-12-31", False)


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "9999-12-31T23:00-05:00", "1899-12-31"])
def test_dates_at_the_edge_of_the_calendar_are_usage_errors(crm: CLI, value: str) -> None:
    _customer(crm, "kiri@x.example", "Pacific/Kiritimati")
    refused = crm(
        "purchases", "add", "kiri@x.example", "--product", "Panel", "--amount", "1", "--date", value
    )
    assert refused.code == 2
    assert "--date" in refused.stderr
    assert "1900-01-01..2200-12-31" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert crm("timeline", "kiri@x.example", "--json").json() == []


def test_an_import_row_with_an_impossible_date_is_refused_with_line_and_field(
    crm: CLI, tmp_path: Path
) -> None:
    _customer(crm, "west@x.example", "Pacific/Honolulu")
    (tmp_path / "orders.csv").write_text(
        "Email,Date,Product,Amount\nwest@x.example,9999-12-31,Panel,1\nwest@x.example,2021-12-31,Panel,1\n",
        encoding="utf-8",
    )
    imported = crm("purchases", "import", "orders.csv", "--json")
    assert imported.code == 1
    report = imported.json()
    assert report["created"] == 1
    assert [(e["row"], e["reason"].split(" (")[0]) for e in report["errors"]] == [
        (2, "date: date '9999-12-31' is outside 1900-01-01..2200-12-31"),
    ]
    assert "Traceback" not in imported.stderr
