"""Planning on SQLite and PostgreSQL: the right occurrences, at the right local time, once."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from mailcrm import planner, wiring
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    Filters,
    NoReplyTo,
    OnDate,
    Rule,
    RuleSet,
    SendWindow,
)
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.store import customers
from mailcrm.store.db import Database
from mailcrm.store.models import Message, MessageLink, OutboxItem, Purchase, TimelineEvent
from mailcrm.store.salespeople import sync_team

SETTINGS = Settings(salespeople=[SalespersonSettings(name="Alice", email="alice@acme.example")])


def _customer(db: Database, **fields: str) -> int:
    with db.write() as session:
        sync_team(session, wiring.team(SETTINGS))
        created = customers.create(session, draft_from_fields(fields, new_record=True))
        assert created.id is not None
        return created.id


def _outbox(db: Database) -> list[OutboxItem]:
    with db.read() as session:
        return list(session.exec(select(OutboxItem).order_by(OutboxItem.due_at)).scalars())  # type: ignore[call-overload]


def test_birthday_on_feb_29_is_planned_once_at_local_time(db: Database) -> None:
    _customer(db, name="Leap", email="leap@x.example", birthday="2000-02-29", timezone="Asia/Bangkok")
    _customer(db, name="Other", email="other@x.example", birthday="1990-07-01")
    rules = RuleSet(rules=(Rule("birthday-card", AnniversaryOf("birthday"), "birthday", send_time=time(10)),))
    now = datetime(2027, 2, 27, 12, tzinfo=UTC)
    report = planner.plan(db, SETTINGS, rules, now)
    assert report.inserted == 1
    rows = _outbox(db)
    assert [(r.rule, r.occurrence, r.state) for r in rows] == [("birthday-card", "year:2027", "due")]
    assert rows[0].due_at == datetime(2027, 2, 28, 3, tzinfo=UTC)  # 10:00 in Bangkok
    assert rows[0].message_id.startswith("<") and rows[0].message_id.endswith(">")
    again = planner.plan(db, SETTINGS, rules, now + timedelta(hours=1))
    assert again.inserted == 0 and len(_outbox(db)) == 1


def test_after_purchase_respects_the_send_window(db: Database) -> None:
    customer = _customer(db, name="Buyer", email="buyer@x.example", timezone="Europe/Berlin")
    friday_evening = datetime(2026, 11, 20, 18, tzinfo=UTC)  # 19:00 in Berlin
    with db.write() as session:
        session.add(Purchase(customer_id=customer, purchased_at=friday_evening,
                             purchased_on=friday_evening.date(), product="Panel",
                             amount_minor=100, currency="EUR", dedupe_key="k1"))  # fmt: skip
    window = SendWindow(days=frozenset(range(5)), start=time(9), end=time(17))
    rules = RuleSet(
        rules=(Rule("thank-you", AfterPurchase(timedelta(hours=1)), "thank_you", send_window=window),)
    )
    emails = planner.forecast(db, SETTINGS, rules, friday_evening, days=7)
    assert len(emails) == 1
    assert emails[0].due_at == datetime(2026, 11, 23, 8, tzinfo=UTC)  # Monday 09:00 Berlin
    assert emails[0].occurrence.startswith("purchase:")
    assert _outbox(db) == []  # a forecast writes nothing


def test_follow_up_until_the_customer_replies(db: Database) -> None:
    customer = _customer(db, name="Quiet", email="quiet@x.example")
    sent = datetime(2026, 11, 1, 9, tzinfo=UTC)
    with db.write() as session:
        message = Message(message_id="<offer@acme.example>", direction="out", sent_at=sent, subject="Offer")
        session.add(message)
        session.flush()
        assert message.id is not None
        session.add(MessageLink(message_pk=message.id, customer_id=customer, role="to"))
    rules = RuleSet(
        rules=(
            Rule(
                "follow-up",
                NoReplyTo("any_outbound", timedelta(days=3), repeat_times=1, repeat_every=timedelta(days=4)),
                "follow_up",
            ),
        )
    )
    emails = planner.forecast(db, SETTINGS, rules, sent, days=30)
    assert [e.due_at - sent for e in emails] == [timedelta(days=3), timedelta(days=7)]
    assert all(e.in_reply_to == "<offer@acme.example>" for e in emails)
    with db.write() as session:
        session.add(TimelineEvent(customer_id=customer, kind="reply", at=sent + timedelta(days=1)))
    assert planner.forecast(db, SETTINGS, rules, sent, days=30) == []


def test_filters_and_archived_customers(db: Database) -> None:
    vip = _customer(db, name="Vip", email="vip@x.example", tags="vip", language="th")
    _customer(db, name="Plain", email="plain@x.example", language="th")
    archived = _customer(db, name="Gone", email="gone@x.example", tags="vip", language="th")
    with db.write() as session:
        customers.archive(session, customers.resolve(session, str(archived)))
    at = datetime(2026, 12, 1, 10, 0)
    rules = RuleSet(rules=(Rule("xmas", OnDate(at), "win_back", filters=Filters(tags=frozenset({"vip"}))),))
    emails = planner.forecast(db, SETTINGS, rules, datetime(2026, 11, 30, tzinfo=UTC), days=3)
    assert [e.customer_id for e in emails] == [vip]
    assert emails[0].occurrence == "campaign"


def test_occurrences_missed_while_down_are_recorded_as_skipped(db: Database) -> None:
    _customer(db, name="Past", email="past@x.example", birthday="1980-11-20", timezone="UTC")
    rules = RuleSet(rules=(Rule("birthday-card", AnniversaryOf("birthday"), "birthday", send_time=time(10)),))
    report = planner.plan(db, SETTINGS, rules, datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert report.skipped_late == 1
    rows = _outbox(db)
    assert [(r.occurrence, r.state) for r in rows] == [("year:2026", "skipped")]
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(OutboxItem)).scalar_one() == 1
    assert date(2026, 11, 20) == rows[0].due_at.date()
