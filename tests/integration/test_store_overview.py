"""The store's overview reads (what the demo reports) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from mailcrm import wiring
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.purchases import purchase_from_fields
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.store import customers, notes, overview, purchases, timeline
from mailcrm.store.db import Database
from mailcrm.store.outbox import suppress
from mailcrm.store.salespeople import sync_team


def _world(db: Database) -> dict[str, int]:
    """Ann (customer, two purchases, a second address), Bo (lead at Siam Solar, no
    owner), Cy (customer, one purchase); Ann's second address and one nobody owns are
    suppressed."""
    settings = Settings(salespeople=[SalespersonSettings(name="Alice", email="alice@acme.example")])
    ids: dict[str, int] = {}
    with db.write() as session:
        sync_team(session, wiring.team(settings))
        for name, fields in (
            ("ann", {"email": "ann@example.org ann.home@example.org", "owner": "alice@acme.example",
                     "language": "th", "lead_source": "web", "status": "customer"}),
            ("bo", {"email": "bo@example.org", "company": "Siam Solar", "status": "lead"}),
            ("cy", {"email": "cy@example.org", "language": "en", "status": "customer"}),
        ):  # fmt: skip
            created = customers.create(
                session, draft_from_fields({"name": name.title(), **fields}, new_record=True)
            )
            assert created.id is not None
            ids[name] = created.id
        bought = (
            ("ann", "2024-06-01", "100", "THB"),
            ("ann", "2024-07-01", "50", "THB"),
            ("cy", "2024-06-02", "9.50", "USD"),
        )
        for who, day, amount, currency in bought:
            fields = {"date": day, "product": "Tea", "amount": amount, "currency": currency}
            draft = purchase_from_fields(fields, default_currency="THB", default_timezone="UTC")
            assert purchases.add(session, ids[who], draft, default_timezone="UTC")
        suppress(session, "ann.home@example.org", "manual")
        suppress(session, "gone@example.org", "hard_bounce")
    return ids


def test_totals_count_what_the_store_holds(db: Database) -> None:
    ids = _world(db)
    with db.write() as session:
        notes.add(session, ids["ann"], "alice@acme.example", "called")
    with db.read() as session:
        found = overview.totals(session)
        assert overview.busiest_buyer(session) == ids["ann"]
        assert overview.purchases_per_customer(session) == {ids["ann"]: 2, ids["cy"]: 1}
    assert (found.companies, found.purchases, found.notes) == (1, 3, 1)
    assert found.statuses == {"customer": 2, "lead": 1}
    assert found.languages["th"] == 1 and found.languages["en"] == 1
    assert found.revenue_minor == {"THB": 15000, "USD": 950}


def test_leads_addresses_and_suppressions_name_their_customers(db: Database) -> None:
    ids = _world(db)
    with db.read() as session:
        leads = [(c.id, address, company) for c, address, company in overview.leads(session)]
        addresses = [(c.id, address) for c, address in overview.addresses(session)]
        suppressed = [(row.address, row.reason, owner) for row, owner in overview.suppressions(session)]
    assert leads == [(ids["bo"], "bo@example.org", "Siam Solar")]
    assert (ids["ann"], "ann.home@example.org") in addresses and len(addresses) == 4
    assert suppressed == [
        ("ann.home@example.org", "manual", ids["ann"]),
        ("gone@example.org", "hard_bounce", None),
    ]


def test_contacts_put_the_chosen_customer_first_with_primary_address_and_owner(db: Database) -> None:
    ids = _world(db)
    with db.read() as session:
        chosen = overview.contacts(session, first=ids["cy"])
        assert overview.customer(session, ids["bo"]) is not None
        assert overview.customer(session, max(ids.values()) + 1) is None
    assert chosen[0] == (ids["cy"], "Cy", "cy@example.org", None)
    assert (ids["ann"], "Ann", "ann@example.org", "alice@acme.example") in chosen
    assert len(chosen) == 3  # primary addresses only


def test_a_note_keeps_the_time_it_was_written(db: Database) -> None:
    """The demo's history carries notes written in the past: they keep their own date on
    the timeline instead of the moment they were stored."""
    ids = _world(db)
    written = datetime(2023, 5, 4, 10, 30, tzinfo=UTC)
    with db.write() as session:
        notes.add(session, ids["ann"], "alice@acme.example", "met at the fair", at=written)
    with db.read() as session:
        entries = timeline.for_customer(session, ids["ann"])
    shown = [entry.at for entry in entries if entry.kind == "note"]
    assert [at.replace(tzinfo=None) for at in shown] == [written.replace(tzinfo=None)]
