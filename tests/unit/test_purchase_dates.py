"""Purchase dates in the pure core: kept as written until the customer's zone is known, then
placed on that customer's calendar; dates at the edge of the calendar are refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailcrm.domain.calendar import instant_of
from mailcrm.domain.occurrences import Candidate, PlanContext, plan_rule
from mailcrm.domain.purchases import place, purchase_from_fields
from mailcrm.domain.rules import AfterPurchase, AnniversaryOf, NoPurchaseFor, Rule
from mailcrm.domain.values import parse_when
from mailcrm.errors import ValidationError


def test_a_date_stays_a_date_and_a_wall_time_stays_naive() -> None:
    assert parse_when("2021-11-02") == date(2021, 11, 2)
    assert parse_when(" 2021-11-02T14:30 ") == datetime(2021, 11, 2, 14, 30)
    assert parse_when("2021-11-02T23:30-05:00") == datetime(2021, 11, 2, 23, 30, tzinfo=ZoneInfo("EST"))


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01",
        "1899-12-31",
        "2201-01-01",
        "9999-12-31",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00+14:00",
    ],
)
def test_dates_outside_1900_to_2200_are_refused_naming_the_range(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        purchase_from_fields(
            {"date": raw, "product": "Tea", "amount": "1"},
            default_currency="THB",
            default_timezone="Pacific/Kiritimati",
        )
    assert caught.value.message == f"date: date {raw!r} is outside 1900-01-01..2200-12-31"


@pytest.mark.parametrize("raw", ["1900-01-01", "2200-12-31", "2200-12-31T23:59+14:00"])
def test_the_edges_of_the_range_are_accepted_and_placed_in_any_zone(raw: str) -> None:
    when = parse_when(raw)
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12", "America/St_Johns"):
        placed = place(when, zone)
        assert EARLY <= placed.purchased_at <= LATE


EARLY = datetime(1899, 12, 31, tzinfo=UTC)
LATE = datetime(2201, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "zone", "start"),
    [
        ("2021-11-02", "America/New_York", "2021-11-02T04:00"),
        ("2021-03-14", "America/New_York", "2021-03-14T05:00"),  # still EST at midnight
        ("2021-12-31", "Pacific/Honolulu", "2021-12-31T10:00"),
        ("2021-01-01", "America/St_Johns", "2021-01-01T03:30"),
        ("2021-01-01", "Pacific/Kiritimati", "2020-12-31T10:00"),
        # Tehran skipped midnight on 2021-03-22 (00:00 became 01:00 +04:30): the day
        # starts at 01:00, the first instant it has.
        ("2021-03-22", "Asia/Tehran", "2021-03-21T20:30"),
        ("2016-08-14", "America/Santiago", "2016-08-14T04:00"),  # midnight skipped there too
    ],
)
def test_a_date_is_placed_at_the_first_instant_of_that_local_day(day: str, zone: str, start: str) -> None:
    placed = place(date.fromisoformat(day), zone)
    assert placed.purchased_at == datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert (placed.purchased_on, placed.has_time) == (date.fromisoformat(day), False)
    assert placed.purchased_at.astimezone(ZoneInfo(zone)).date() == placed.purchased_on


def test_a_wall_time_is_local_and_an_offset_keeps_its_instant() -> None:
    naive = place(datetime(2021, 11, 2, 14, 30), "America/New_York")
    assert (naive.purchased_at, naive.purchased_on) == (
        datetime(2021, 11, 2, 18, 30, tzinfo=UTC),
        date(2021, 11, 2),
    )
    given = datetime(2021, 11, 2, 23, 30, tzinfo=ZoneInfo("EST"))
    assert place(given, "America/Chicago").purchased_on == date(2021, 11, 2)
    assert place(given, "Pacific/Kiritimati").purchased_on == date(2021, 11, 3)
    assert place(given, "Pacific/Kiritimati").purchased_at == datetime(2021, 11, 3, 4, 30, tzinfo=UTC)


def test_the_dedupe_key_does_not_depend_on_the_customers_zone() -> None:
    fields = {"date": "2021-11-02", "product": "Tea", "amount": "1"}
    key = purchase_from_fields(fields, default_currency="THB", default_timezone="UTC").dedupe_key
    again = purchase_from_fields(fields, default_currency="THB", default_timezone="UTC").dedupe_key
    assert key == again
    assert (
        key
        == purchase_from_fields(
            fields | {"date": "2021-11-02T00:00:00+00:00"}, default_currency="THB", default_timezone="UTC"
        ).dedupe_key
    )  # what earlier versions stored for the date


# --- the planner's reading of a date-only purchase ------------------------------------------

CONTEXT = PlanContext(
    start=datetime(2021, 12, 1, tzinfo=UTC),
    end=datetime(2022, 3, 1, tzinfo=UTC),
    now=datetime(2021, 12, 1, tzinfo=UTC),
    grace=timedelta(hours=6),
    default_timezone="UTC",
)


def _bought(day: str, zone: str) -> Candidate:
    placed = place(date.fromisoformat(day), zone)
    return Candidate(1, zone, None, None, placed.purchased_at, "7", placed.purchased_on, placed.has_time)


def test_after_purchase_and_win_back_count_whole_local_days_to_the_send_time() -> None:
    buyer = _bought("2021-12-31", "Pacific/Honolulu")
    thanks = plan_rule(Rule("thanks", AfterPurchase(timedelta(days=1)), "t"), [buyer], CONTEXT)
    assert [(e.occurrence, e.due_at) for e in thanks] == [
        ("purchase:7", instant_of(datetime(2022, 1, 1, 10), "Pacific/Honolulu"))
    ]
    lapse = plan_rule(Rule("win", NoPurchaseFor(timedelta(days=30)), "w"), [buyer], CONTEXT)
    assert [(e.occurrence, e.due_at) for e in lapse] == [
        ("lapse:2021-12-31", datetime(2022, 1, 30, 20, tzinfo=UTC))
    ]


def test_rule_dates_bound_the_purchase_s_local_date() -> None:
    buyer = _bought("2021-12-31", "Pacific/Honolulu")  # 10:00 UTC: still Dec 31 there
    rule = Rule(
        "thanks", AfterPurchase(timedelta(days=1)), "t", start=date(2021, 12, 31), end=date(2021, 12, 31)
    )
    assert len(plan_rule(rule, [buyer], CONTEXT)) == 1
    later = Rule("thanks", AfterPurchase(timedelta(days=1)), "t", start=date(2022, 1, 1))
    assert plan_rule(later, [buyer], CONTEXT) == []


def test_a_birthday_anniversary_is_untouched() -> None:
    born = Candidate(1, "America/New_York", None, None, date(1992, 2, 29))
    cards = plan_rule(Rule("b", AnniversaryOf("birthday"), "b"), [born], CONTEXT)
    assert [(e.occurrence, e.due_at) for e in cards] == [("year:2022", datetime(2022, 2, 28, 15, tzinfo=UTC))]


def test_years_since_counts_from_the_local_date_of_the_purchase() -> None:
    from mailcrm.render.context import template_context

    # Bought on 2021-01-01 in Kiritimati: its instant is still Dec 31 in UTC.
    placed = place(date(2021, 1, 1), "Pacific/Kiritimati")
    bought = {"purchased_at": placed.purchased_at, "purchased_on": placed.purchased_on}
    variables = template_context(
        customer={"name": "Tia"},
        salesperson={"name": "Al"},
        purchase=bought,
        extra={"today": date(2021, 12, 31)},
    )
    assert variables["purchase"]["years_since"] == 0
