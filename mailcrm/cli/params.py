"""The command line's typed values and their ranges: ids, counts, customers, moments.

Every bound is checked here, at the edge, so that a hostile number (an id beyond 64
bits, `--limit 99999999999999999999`) or a date-time at the end of the calendar is a
usage error (exit 2) naming the option and the accepted range, never an OverflowError
deep in SQLite, PostgreSQL or `datetime`. Commands declare their options with these
helpers instead of checking values one by one.

The ranges, and why:
- ids: 1 to 2**63-1, the largest SQLite INTEGER and PostgreSQL BIGINT;
- limits and counts: 1 to 1,000,000, far beyond what a terminal or a script reads at
  once, and small enough for any LIMIT clause;
- offsets: 0 to 2**63-1;
- date-times (`plan --at`): 1900-01-01 to 2200-12-31 UTC. A forecast reaches up to 366
  days ahead and every moment is shown in customers' timezones (up to 14 hours from UTC),
  so the bound must keep a year's margin from `datetime`'s years 1 and 9999; beyond
  that, a CRM has no business planning email in years no customer lives in.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import typer

MAX_ID = 2**63 - 1
MAX_LIMIT = 1_000_000
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MOMENT_RANGE = "from 1900-01-01 to 2200-12-31 UTC"


def id_argument(help: str) -> Any:
    """A positional record id (outbox row, message ...): 1 to 2**63-1."""
    return typer.Argument(min=1, max=MAX_ID, metavar="ID", help=help)


def limit_option(help: str) -> Any:
    """`--limit`: at least 1, at most `MAX_LIMIT`."""
    return typer.Option(min=1, max=MAX_LIMIT, help=help)


def count_option(help: str) -> Any:
    """A count such as `--quantity`: at least 1, at most `MAX_LIMIT`."""
    return typer.Option(min=1, max=MAX_LIMIT, help=help)


def offset_option(help: str) -> Any:
    """`--offset`: 0 to 2**63-1."""
    return typer.Option(min=0, max=MAX_ID, help=help)


def customer_ref(value: str) -> str:
    """A customer named by id or address: an id must fit a 64-bit column.

    Anything not made of digits is left to the store, which looks it up as an address.
    """
    text = value.strip()
    if not text.isdigit():
        return value
    if not text.isascii():  # '²' and other digits `int` refuses
        raise typer.BadParameter(f"{value!r} is not a customer id: write it with the digits 0-9")
    number = int(text)
    if not 1 <= number <= MAX_ID:
        raise typer.BadParameter(f"customer id {text} is out of range: ids run from 1 to {MAX_ID}")
    return text


def customer_argument(help: str = "Customer id or any of its email addresses.") -> Any:
    """A positional CUSTOMER (id or email address), its id range checked."""
    return typer.Argument(parser=customer_ref, metavar="CUSTOMER", help=help)


def customer_option(*names: str, help: str = "Customer id or any of its email addresses.") -> Any:
    """`--customer` (id or email address), its id range checked."""
    return typer.Option(*names, parser=customer_ref, help=help)


def bounded_float(option: str, low: float, high: float) -> Any:
    """A parser for a decimal option within [low, high]; NaN and infinity are refused."""

    def parse(value: str | float) -> float:
        try:
            number = float(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a number; use {low:g} to {high:g}") from None
        if math.isnan(number) or not low <= number <= high:
            raise typer.BadParameter(f"{value} is out of range; use {option} from {low:g} to {high:g}")
        return number

    return parse


def moment(option: str, text: str | None) -> datetime:
    """An ISO date-time (UTC unless it has an offset), within `MOMENT_RANGE`; now if empty."""
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date-time: write e.g. 2026-12-01T09:00 or 2026-12-01T09:00+07:00",
            param_hint=option,
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Compare before converting: astimezone itself overflows at the calendar's ends.
    if not EARLIEST <= value <= LATEST:
        raise typer.BadParameter(f"{text} is out of range: use a date-time {MOMENT_RANGE}", param_hint=option)
    return value.astimezone(UTC)
