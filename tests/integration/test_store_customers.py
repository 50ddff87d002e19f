"""Customer records on SQLite and PostgreSQL, through the same functions the CLI uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailcrm import wiring
from mailcrm.domain.customers import draft_from_fields
from mailcrm.errors import ConflictError, NotFoundError, ValidationError
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.store import customers, notes, timeline
from mailcrm.store.db import Database
from mailcrm.store.models import Message, Purchase, Suppression, TimelineEvent
from mailcrm.store.salespeople import sync_team


def _draft(**fields: str):  # type: ignore[no-untyped-def]
    return draft_from_fields(fields, new_record=True)


def _with_team(db: Database) -> None:
    settings = Settings(salespeople=[SalespersonSettings(name="Alice", email="alice@acme.example")])
    with db.write() as session:
        sync_team(session, wiring.team(settings))


def test_create_resolve_by_id_or_any_address(db: Database) -> None:
    _with_team(db)
    with db.write() as session:
        created = customers.create(
            session,
            _draft(
                name="สมศรี ใจดี",
                email="Somsri@Example.co.th somsri.home@mail.example",
                owner="alice@acme.example",
                company="Siam Solar",
                tags="VIP, seminar",
                birthday="1988-02-29",
                timezone="Asia/Bangkok",
                language="th",
            ),
        )
        customer_id = created.id
    with db.read() as session:
        by_id = customers.resolve(session, str(customer_id))
        by_second = customers.resolve(session, "SOMSRI.HOME@mail.example")
        assert by_id.id == by_second.id == customer_id
        view = customers.views(session, [by_id])[0]
    assert view.name == "สมศรี ใจดี"
    assert view.email == "somsri@example.co.th"
    assert [a.address for a in view.emails] == ["somsri@example.co.th", "somsri.home@mail.example"]
    assert view.owner == "alice@acme.example"
    assert view.company == "Siam Solar"
    assert view.tags == ["seminar", "vip"]
    assert view.birthday is not None and view.birthday.isoformat() == "1988-02-29"
    assert view.status == "lead"


def test_an_address_belongs_to_one_customer(db: Database) -> None:
    with db.write() as session:
        customers.create(session, _draft(name="Ann", email="ann@x.example"))
    with pytest.raises(ConflictError, match="already belongs to customer"), db.write() as session:
        customers.create(session, _draft(name="Other Ann", email="ANN@x.example"))
    with db.read() as session:
        assert len(customers.search(session)) == 1


def test_unknown_owner_is_refused_and_nothing_is_written(db: Database) -> None:
    with pytest.raises(ValidationError, match="unknown salesperson"), db.write() as session:
        customers.create(session, _draft(name="Bo", email="bo@x.example", owner="ghost@acme.example"))
    with db.read() as session, pytest.raises(NotFoundError):
        customers.resolve(session, "bo@x.example")


def test_edit_addresses_tags_and_primary(db: Database) -> None:
    with db.write() as session:
        record = customers.create(session, _draft(name="Li Wei", email="li.wei@x.example", tags="a,b"))
    with db.write() as session:
        record = customers.resolve(session, "li.wei@x.example")
        customers.update(
            session,
            record,
            draft_from_fields({"email": "wei@work.example", "tags": "c"}, new_record=False),
            remove_tags=["a"],
            primary="wei@work.example",
        )
    with db.read() as session:
        view = customers.views(session, [customers.resolve(session, "wei@work.example")])[0]
    assert view.email == "wei@work.example"
    assert view.tags == ["b", "c"]
    with pytest.raises(ValidationError, match="at least one"), db.write() as session:
        record = customers.resolve(session, "li.wei@x.example")
        customers.update(
            session,
            record,
            draft_from_fields({}, new_record=False),
            remove_emails=["li.wei@x.example", "wei@work.example"],
        )


def test_search_by_name_email_company_and_tag(db: Database) -> None:
    with db.write() as session:
        customers.create(session, _draft(name="王芳", email="wang@golden.example", company="Golden Dragon"))
        customers.create(session, _draft(name="Emily Carter", email="emily@harbour.example", tags="vip"))
        archived = customers.create(session, _draft(name="Old Emily", email="old@x.example"))
        customers.archive(session, archived)
    with db.read() as session:
        names = lambda rows: sorted(c.name for c in rows)  # noqa: E731
        assert names(customers.search(session, "emily")) == ["Emily Carter"]
        assert names(customers.search(session, "emily", include_archived=True)) == [
            "Emily Carter",
            "Old Emily",
        ]
        assert names(customers.search(session, "王")) == ["王芳"]
        assert names(customers.search(session, "golden dragon")) == ["王芳"]
        assert names(customers.search(session, "harbour.example")) == ["Emily Carter"]
        assert names(customers.search(session, tag="VIP")) == ["Emily Carter"]
        assert names(customers.search(session, status="archived")) == ["Old Emily"]


def test_suppressed_address_is_shown(db: Database) -> None:
    with db.write() as session:
        customers.create(session, _draft(name="Sara", email="sara@x.example sara2@x.example"))
        session.add(Suppression(address="sara2@x.example", reason="hard_bounce"))
    with db.read() as session:
        view = customers.views(session, [customers.resolve(session, "sara@x.example")])[0]
    flags = {a.address: (a.suppressed, a.suppression_reason) for a in view.emails}
    assert flags == {"sara@x.example": (False, None), "sara2@x.example": (True, "hard_bounce")}


def test_timeline_merges_events_purchases_and_notes_newest_first(db: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with db.write() as session:
        record = customers.create(session, _draft(name="Dara", email="dara@x.example"))
        assert record.id is not None
        message = Message(
            message_id="<m1@x.example>",
            direction="in",
            subject="Quote please",
            sent_at=now - timedelta(days=1),
        )
        session.add(message)
        session.flush()
        session.add(
            TimelineEvent(
                customer_id=record.id, kind="email", at=now - timedelta(days=1), message_pk=message.id
            )
        )
        session.add(
            Purchase(
                customer_id=record.id,
                purchased_at=now - timedelta(days=10),
                purchased_on=(now - timedelta(days=10)).date(),
                product="Inverter",
                amount_minor=3250000,
                currency="THB",
                dedupe_key="k1",
            )
        )
        note = notes.add(session, record.id, "alice@acme.example", "Call back in March")
        note.created_at = now - timedelta(hours=2)
        customer_id = record.id
    with db.read() as session:
        entries = timeline.for_customer(session, customer_id)
    assert [e.kind for e in entries] == ["note", "email", "purchase"]
    assert entries[1].message_id == "<m1@x.example>"
    assert entries[1].direction == "in"
    assert entries[1].subject == "Quote please"
    assert entries[2].summary == "bought 1 × Inverter for 32500.00 THB"
    assert all(e.at.tzinfo is not None for e in entries)
    with db.read() as session:
        assert len(timeline.for_customer(session, customer_id, limit=2)) == 2


def test_timestamps_round_trip_as_utc(db: Database) -> None:
    bangkok_noon = datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(hours=-7)
    with db.write() as session:
        record = customers.create(session, _draft(name="Tz", email="tz@x.example"))
        assert record.id is not None
        session.add(
            Purchase(
                customer_id=record.id,
                purchased_at=bangkok_noon,
                purchased_on=bangkok_noon.date(),
                product="p",
                currency="USD",
                dedupe_key="k",
            )
        )
    with db.read() as session:
        entries = timeline.for_customer(session, customers.resolve(session, "tz@x.example").id or 0)
    assert entries[0].at == bangkok_noon
    assert entries[0].at.utcoffset() == timedelta(0)
