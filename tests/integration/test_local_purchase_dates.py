"""A purchase dated without a time happened on that calendar day in the customer's zone.

Customers far west of UTC (Honolulu, New York, St John's), far east (Kiritimati, UTC+14)
and with a half-hour offset and midnight DST changes (Tehran before 2023) buy on DST
change days, Feb 29 and Dec 31 / Jan 1. Recorded through a CSV import or the way
`purchases add --date` records them, on SQLite and PostgreSQL, their anniversary is on
that local day at the rule's `send_time` (10:00), and win-back, after-purchase and the
timeline read the same local date. Rows written by earlier versions are converted by
migration 0004 and still recognised by a re-import.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from plan_fixtures import Planned, World, make_settings, utc
from sqlalchemy import text
from sqlmodel import Session

from mailcrm.domain.purchases import legacy_instant, purchase_dedupe_key, purchase_from_fields
from mailcrm.store import customers, migrate, purchases, timeline
from mailcrm.store.db import Database
from mailcrm.store.importer import import_customers, import_purchases

ANNIVERSARY = """
    send_time: "10:00"
    rules:
      - name: anniversary
        when: {anniversary_of: first_purchase}
        send_window: any
        template: anniversary
"""


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, make_settings(tmp_path))


def _record(
    world: World, tmp_path: Path, way: str, zone: str, day: str, email: str = "buyer@x.example"
) -> None:
    """A customer in `zone` who bought on `day` (no time), recorded by CSV or as `purchases add` does."""
    if way == "csv":
        people = tmp_path / "people.csv"
        people.write_text(f"Name,Email,Time zone\nBuyer,{email},{zone}\n", encoding="utf-8")
        import_customers(world.db, people)
        orders = tmp_path / "orders.csv"
        orders.write_text(f"Email,Date,Product,Amount\n{email},{day},Panel,100\n", encoding="utf-8")
        report = import_purchases(world.db, orders, default_currency="THB", default_timezone="UTC")
        assert (report.created, report.failed) == (1, 0)
        return
    customer = world.customer(email, timezone=zone)
    draft = purchase_from_fields(
        {"date": day, "product": "Panel", "amount": "100"}, default_currency="THB", default_timezone="UTC"
    )
    with world.db.write() as session:
        assert purchases.add(session, customer, draft, default_timezone="UTC")


WAYS = ("csv", "add")

# (zone, purchase date, anniversary due: that local day at 10:00, as UTC)
LOCAL_DAYS = [
    pytest.param("America/New_York", "2021-03-14", "2022-03-14T14:00Z", id="new-york-dst-starts"),
    pytest.param("America/New_York", "2021-11-07", "2022-11-07T15:00Z", id="new-york-dst-ends"),
    pytest.param("America/New_York", "2020-02-29", "2021-02-28T15:00Z", id="new-york-feb-29"),
    pytest.param("Pacific/Honolulu", "2021-12-31", "2022-12-31T20:00Z", id="honolulu-dec-31"),
    pytest.param("Pacific/Honolulu", "2024-02-29", "2025-02-28T20:00Z", id="honolulu-feb-29"),
    pytest.param("America/St_Johns", "2021-01-01", "2022-01-01T13:30Z", id="st-johns-jan-1"),
    pytest.param("America/St_Johns", "2021-03-14", "2022-03-14T12:30Z", id="st-johns-dst-starts"),
    pytest.param("Pacific/Kiritimati", "2021-01-01", "2021-12-31T20:00Z", id="kiritimati-jan-1"),
    pytest.param("Pacific/Kiritimati", "2021-12-31", "2022-12-30T20:00Z", id="kiritimati-dec-31"),
    pytest.param("Asia/Tehran", "2021-03-22", "2022-03-22T05:30Z", id="tehran-midnight-dst-gap"),
    pytest.param("Asia/Tehran", "2021-09-22", "2022-09-22T06:30Z", id="tehran-dst-ends"),
]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("zone", "day", "due"), LOCAL_DAYS)
def test_the_anniversary_is_on_the_local_day_at_the_send_time(
    world: World, tmp_path: Path, way: str, zone: str, day: str, due: str
) -> None:
    _record(world, tmp_path, way, zone, day)
    rules = world.rules(ANNIVERSARY)
    year = utc(due[:-1]).astimezone(ZoneInfo(zone)).year  # the local anniversary's year
    around = (utc(due[:-1]) - timedelta(days=20)).isoformat(timespec="minutes")[:16]

    assert world.forecast(rules, around, days=40) == [
        Planned("anniversary", "buyer@x.example", f"year:{year}", due),
    ]
    with world.db.read() as session:
        stored = session.execute(text("SELECT purchased_on, has_time FROM purchase")).one()
    assert (str(stored[0]), bool(stored[1])) == (day, False)


@pytest.mark.parametrize("way", WAYS)
def test_last_purchase_and_win_back_count_from_the_local_date(world: World, tmp_path: Path, way: str) -> None:
    # St John's is UTC-3:30: midnight UTC of Dec 31 is still Dec 30 there.
    _record(world, tmp_path, way, "America/St_Johns", "2021-12-31")
    with world.db.read() as session:
        buyer = customers.resolve(session, "buyer@x.example").id
    assert buyer is not None
    world.purchase(buyer, "2021-06-01")  # an earlier one: not the last purchase
    rules = world.rules(
        """
        send_time: "10:00"
        rules:
          - name: last
            when: {anniversary_of: last_purchase}
            send_window: any
            template: anniversary
          - name: win-back
            when: {no_purchase_for: 30d}
            send_window: any
            template: win_back
          - name: thanks
            when: {after: purchase, wait: 1d}
            send_window: any
            start: 2021-12-31
            template: thank_you
        """
    )
    assert world.forecast(rules, "2021-12-30T00:00", days=3) == [
        Planned("thanks", "buyer@x.example", world_purchase_ref(world), "2022-01-01T13:30Z"),
    ]
    assert world.forecast(rules, "2022-01-20T00:00", days=20) == [
        Planned("win-back", "buyer@x.example", "lapse:2021-12-31", "2022-01-30T13:30Z"),
    ]
    assert world.forecast(rules, "2022-12-20T00:00", days=20) == [
        Planned("last", "buyer@x.example", "year:2022", "2022-12-31T13:30Z"),
    ]


def world_purchase_ref(world: World) -> str:
    with world.db.read() as session:
        newest = session.execute(text("SELECT id FROM purchase ORDER BY purchased_at DESC LIMIT 1"))
        return f"purchase:{newest.scalar_one()}"


def test_a_date_time_with_an_offset_keeps_its_instant(world: World) -> None:
    chicago = world.customer("chi@x.example", timezone="America/Chicago")
    new_york = world.customer("ny@x.example", timezone="America/New_York")
    kiritimati = world.customer("kiri@x.example", timezone="Pacific/Kiritimati")
    for customer in (chicago, new_york, kiritimati):
        world.purchase(customer, "2021-11-02T23:30-05:00")
    with world.db.read() as session:
        rows = session.execute(
            text("SELECT customer_id, purchased_on, has_time FROM purchase ORDER BY customer_id")
        ).all()
        bought = purchases.for_customer(session, new_york)
    # One instant: 23:30 on Nov 2 in Chicago, 00:30 on Nov 3 in New York (still EDT), 18:30
    # on Nov 3 in Kiritimati; each customer's local date is fixed when it is recorded.
    assert [(r[0], str(r[1]), bool(r[2])) for r in rows] == [
        (chicago, "2021-11-02", True),
        (new_york, "2021-11-03", True),
        (kiritimati, "2021-11-03", True),
    ]
    assert bought[0].purchased_at == datetime(2021, 11, 3, 4, 30, tzinfo=UTC)
    rules = world.rules(ANNIVERSARY)
    assert world.forecast(rules, "2022-10-30T00:00", days=10) == [
        Planned("anniversary", "chi@x.example", "year:2022", "2022-11-02T15:00Z"),
        Planned("anniversary", "kiri@x.example", "year:2022", "2022-11-02T20:00Z"),
        Planned("anniversary", "ny@x.example", "year:2022", "2022-11-03T14:00Z"),
    ]


def test_the_timeline_shows_a_date_only_purchase_on_its_date(world: World, tmp_path: Path) -> None:
    _record(world, tmp_path, "add", "Pacific/Honolulu", "2021-12-31")
    with world.db.read() as session:
        record = customers.resolve(session, "buyer@x.example")
        assert record.id is not None
        entries = timeline.for_customer(session, record.id)
    purchase = next(e for e in entries if e.kind == "purchase")
    assert (purchase.payload["date"], purchase.payload["has_time"]) == ("2021-12-31", False)
    assert purchase.at == datetime(2021, 12, 31, 10, 0, tzinfo=UTC)  # midnight in Honolulu


def test_dates_outside_the_accepted_range_are_refused_rows(world: World, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("Name,Email,Time zone\nAnn,ann@x.example,Pacific/Kiritimati\n", encoding="utf-8")
    import_customers(world.db, people)
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "Email,Date,Product,Amount\n"
        "ann@x.example,0001-01-01,Panel,100\n"
        "ann@x.example,9999-12-31,Panel,100\n"
        "ann@x.example,2021-06-01,Panel,100\n",
        encoding="utf-8",
    )
    report = import_purchases(world.db, orders, default_currency="THB", default_timezone="America/New_York")

    hint = "(write a date between 1900-01-01 and 2200-12-31)"
    assert [(e.row, e.reason) for e in report.errors] == [
        (2, f"date: date '0001-01-01' is outside 1900-01-01..2200-12-31 {hint}"),
        (3, f"date: date '9999-12-31' is outside 1900-01-01..2200-12-31 {hint}"),
    ]
    assert (report.created, report.failed) == (1, 2)


# --- migration 0004 ----------------------------------------------------------------------


@pytest.fixture
def old_db(db_url: str) -> Iterator[Database]:
    """A database at revision 0003, the schema before local purchase dates."""
    database = Database(db_url)
    _reset(database)
    migrate.upgrade(database, "0003")
    yield database
    _reset(database)
    database.dispose()


def _reset(database: Database) -> None:
    if database.is_sqlite:
        return
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


class _Created:
    def __init__(self, id: int) -> None:
        self.id: int | None = id


def _old_customer(session: Session, fields: dict[str, str]) -> _Created:
    """A customer as the schema at 0003 holds it (the current model has later columns)."""
    now = datetime(2024, 1, 1)
    customer = session.execute(
        text(
            "INSERT INTO customer (name, timezone, status, custom, created_at, updated_at) "
            "VALUES (:n, :tz, 'customer', '{}', :now, :now) RETURNING id"
        ),
        {"n": fields["name"], "tz": fields.get("timezone"), "now": now},
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO email_address (customer_id, address, is_primary, created_at) "
            "VALUES (:c, :a, TRUE, :now)"
        ),
        {"c": customer, "a": fields["email"], "now": now},
    )
    return _Created(customer)


def _old_purchase(db: Database, customer: int, at: datetime, key: str) -> None:
    with db.write() as session:
        session.execute(
            text(
                "INSERT INTO purchase (customer_id, purchased_at, product, quantity, amount_minor, "
                "currency, dedupe_key, created_at) VALUES (:c, :at, 'Panel', 1, 10000, 'THB', :k, :at)"
            ),
            {"c": customer, "at": at.replace(tzinfo=None), "k": key},
        )


def test_migration_0004_converts_rows_written_by_earlier_versions(old_db: Database, tmp_path: Path) -> None:
    with old_db.write() as session:
        created = _old_customer(
            session, {"name": "Ann", "email": "ann@x.example", "timezone": "America/New_York"}
        )
        assert created.id is not None
        ann = created.id
    # What earlier versions wrote for `2021-11-02` (date only: midnight UTC, the default
    # zone) and for `2021-11-02T23:30:00+00:00`, with the dedupe keys they computed.
    midnight = datetime(2021, 11, 2, tzinfo=UTC)
    evening = datetime(2021, 11, 2, 23, 30, tzinfo=UTC)
    for at in (midnight, evening):
        key = purchase_dedupe_key(
            purchased_at=at, product="Panel", quantity=1, amount_minor=10000, currency="THB", order_ref=None
        )
        _old_purchase(old_db, ann, at, key)

    migrate.upgrade(old_db, default_timezone="UTC")

    with old_db.read() as session:
        rows = [(p.purchased_at, p.purchased_on, p.has_time) for p in purchases.for_customer(session, ann)]
    assert rows == [
        (evening, date(2021, 11, 2), True),  # 19:30 in New York: same instant, local date Nov 2
        (datetime(2021, 11, 2, 4, 0, tzinfo=UTC), date(2021, 11, 2), False),  # Nov 2, 00:00 EDT
    ]
    # Re-importing the file the old rows came from changes nothing.
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "Email,Date,Product,Amount\nann@x.example,2021-11-02,Panel,100\n"
        "ann@x.example,2021-11-02T23:30:00+00:00,Panel,100\n",
        encoding="utf-8",
    )
    report = import_purchases(old_db, orders, default_currency="THB", default_timezone="UTC")
    assert (report.created, report.unchanged) == (0, 2)


def test_migration_0004_survives_rows_at_the_edge_of_the_calendar(old_db: Database) -> None:
    with old_db.write() as session:
        created = _old_customer(session, {"name": "Tia", "email": "tia@x.example", "timezone": "Asia/Tokyo"})
        assert created.id is not None
    # Earlier versions stored `0001-01-01`; its start of day in Tokyo is before year 1.
    _old_purchase(old_db, created.id, datetime(1, 1, 1, tzinfo=UTC), "k1")

    migrate.upgrade(old_db, default_timezone="UTC")

    with old_db.read() as session:
        (row,) = purchases.for_customer(session, created.id)
    assert (row.purchased_at, row.purchased_on, row.has_time) == (
        datetime(1, 1, 1, tzinfo=UTC),
        date(1, 1, 1),
        False,
    )


def test_migration_0004_reads_old_dates_in_the_configured_default_zone(old_db: Database) -> None:
    with old_db.write() as session:
        created = _old_customer(session, {"name": "Bo", "email": "bo@x.example"})
        assert created.id is not None
    # Earlier versions wrote `2024-03-01` as midnight in `defaults.timezone` (Bangkok).
    _old_purchase(old_db, created.id, legacy_instant(date(2024, 3, 1), "Asia/Bangkok"), "k1")

    migrate.upgrade(old_db, default_timezone="Asia/Bangkok")

    with old_db.read() as session:
        (row,) = purchases.for_customer(session, created.id)
    assert (row.purchased_on, row.has_time) == (date(2024, 3, 1), False)
    assert row.purchased_at == datetime(2024, 2, 29, 17, 0, tzinfo=UTC)
