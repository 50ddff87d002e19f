"""Hostile numbers and date-times on the command line: a usage error naming the range.

Before the range checks an id beyond 64 bits, `--limit 99999999999999999999` or
`plan --at 9999-12-31T23:00` ended in an OverflowError traceback from SQLite or
`datetime`; each must be exit 2 with the option and the accepted range named.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcrm.cli import main

from .conftest import CLI, write_config

CONFIG = """\
database:
  url: sqlite:///crm.db
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
"""

HUGE = "99999999999999999999"  # beyond 2**64
JUST_OVER = str(2**63)  # one past SQLite INTEGER and PostgreSQL BIGINT


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


def _one_line(text: str) -> str:
    """The error box of typer, its borders and line breaks removed."""
    return " ".join(text.replace("│", " ").split())


# Every command that takes an id, a customer, a limit, a count, a number of days or a
# date-time, with a value past its range, and the words the error must show.
SWEEP = [
    (["timeline", HUGE], "'CUSTOMER'", "ids run from 1 to 9223372036854775807"),
    (["timeline", JUST_OVER], "'CUSTOMER'", "ids run from 1 to 9223372036854775807"),
    (["timeline", "²"], "'CUSTOMER'", "digits 0-9"),
    (["timeline", "1", "--limit", HUGE], "'--limit'", "less than or equal to 1000000"),
    (["timeline", "1", "--limit", "0"], "'--limit'", "greater than or equal to 1"),
    (["customers", "show", HUGE], "'CUSTOMER'", "ids run from 1"),
    (["customers", "edit", HUGE, "--name", "X"], "'CUSTOMER'", "ids run from 1"),
    (["customers", "archive", JUST_OVER], "'CUSTOMER'", "ids run from 1"),
    (["customers", "list", "--limit", HUGE], "'--limit'", "less than or equal to 1000000"),
    (["customers", "list", "--limit", "1e20"], "'--limit'", "valid integer"),
    (["customers", "list", "--offset", HUGE], "'--offset'", "less than or equal to 9223372036854775807"),
    (["notes", "add", HUGE, "hello"], "'CUSTOMER'", "ids run from 1"),
    (["purchases", "add", HUGE, "--product", "X", "--amount", "1"], "'CUSTOMER'", "ids run from 1"),
    (
        ["purchases", "add", "1", "--product", "X", "--amount", "1", "--quantity", HUGE],
        "'--quantity'",
        "less than or equal to 1000000",
    ),
    (["templates", "preview", "thank_you", "--customer", HUGE], "'--customer'", "ids run from 1"),
    (["outbox", "list", "--limit", HUGE], "'--limit'", "less than or equal to 1000000"),
    (["outbox", "list", "--customer", JUST_OVER], "'--customer'", "ids run from 1"),
    (["outbox", "show", HUGE], "'ID'", "less than or equal to 9223372036854775807"),
    (["outbox", "show", "--", "-1"], "'ID'", "greater than or equal to 1"),
    (["outbox", "retry", JUST_OVER], "'ID'", "less than or equal to 9223372036854775807"),
    (["outbox", "cancel", HUGE], "'ID'", "less than or equal to 9223372036854775807"),
    (["suppress", "list", "--limit", HUGE], "'--limit'", "less than or equal to 1000000"),
    (["plan", "--days", "1e20"], "'--days'", "from 0.01 to 366"),
    (["plan", "--days", "nan"], "'--days'", "from 0.01 to 366"),
    (["plan", "--at", "9999-12-31T23:00"], "--at", "from 1900-01-01 to 2200-12-31"),
    (["plan", "--at", "9999-12-31T23:00-05:00"], "--at", "from 1900-01-01 to 2200-12-31"),
    (["plan", "--at", "0001-01-01T00:00+05:00"], "--at", "from 1900-01-01 to 2200-12-31"),
    (["plan", "--apply", "--at", "0001-01-01"], "--at", "from 1900-01-01 to 2200-12-31"),
    (["plan", "--at", "not-a-time"], "--at", "is not a date-time"),
]


@pytest.mark.parametrize(
    ("args", "names", "range_words"), SWEEP, ids=[" ".join(args) for args, _, _ in SWEEP]
)
def test_out_of_range_values_are_usage_errors(
    configured: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    names: str,
    range_words: str,
) -> None:
    monkeypatch.chdir(configured)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    error = _one_line(capsys.readouterr().err)
    assert exit_info.value.code == 2, error
    assert names in error and range_words in error, error


def test_an_id_beyond_64_bits_names_the_customer_argument(cli: CLI, configured: Path) -> None:
    result = cli("timeline", HUGE)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert "customer id 99999999999999999999 is out of range" in _one_line(result.stderr)


def test_the_largest_id_is_still_looked_up(cli: CLI, configured: Path) -> None:
    assert cli("customers", "add", "--name", "Ann", "-e", "ann@x.example").code == 0
    result = cli("timeline", str(2**63 - 1))
    assert result.code == 1 and "no customer with id 9223372036854775807" in result.stderr
    assert cli("outbox", "show", str(2**63 - 1)).code == 1
    assert cli("timeline", "1", "--limit", "1000000", "--json").code == 0


def test_a_huge_limit_is_refused_naming_the_bound(cli: CLI, configured: Path) -> None:
    result = cli("customers", "list", "--limit", HUGE)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "Invalid value for '--limit': Input should be less than or equal to 1000000" in _one_line(
        result.stderr
    )


def test_plan_at_the_end_of_the_calendar_names_the_range(cli: CLI, configured: Path) -> None:
    result = cli("plan", "--at", "9999-12-31T23:00")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "use a date-time from 1900-01-01 to 2200-12-31 UTC" in _one_line(result.stderr)
    assert cli("db", "upgrade").code == 0
    inside = cli("plan", "--days", "366", "--at", "2200-12-31T23:59", "--json")
    assert inside.code == 0, inside.stderr
    assert inside.json() == []
