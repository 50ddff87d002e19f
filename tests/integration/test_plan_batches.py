"""A planning pass in batches: the same emails whatever the batch size, one per occurrence,
and a second pass that adds nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_fixtures import Planned, World, make_settings, utc
from sqlalchemy import func, select

from mailcrm import planner
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem

BIRTHDAYS_AND_FIRST_PURCHASES = """
    rules:
      - name: birthday-card
        when: {anniversary_of: birthday}
        template: birthday
      - name: purchase-anniversary
        when: {anniversary_of: first_purchase}
        template: anniversary
"""


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, make_settings(tmp_path))


def test_batches_plan_the_same_emails_as_one_pass(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        customer = world.customer(f"c{n}@x.example", birthday=f"19{80 + n}-02-2{3 + n % 5}", timezone="UTC")
        world.purchase(customer, f"20{18 + n}-02-2{3 + n % 5}T10:00")
    rules = world.rules(BIRTHDAYS_AND_FIRST_PURCHASES)
    # The pass at 2026-03-01 covers the catch-up week before it and the next day.
    whole = world.forecast(rules, "2026-02-22T00:00", days=8)
    assert len(whole) == 14
    monkeypatch.setattr(planner, "_BATCH", 2)  # several batches per rule, several transactions
    assert world.forecast(rules, "2026-02-22T00:00", days=8) == whole
    report = planner.plan(db, world.settings, rules, utc("2026-03-01T00:00"))
    assert report.planned == report.inserted == 14
    assert report.per_rule == {"birthday-card": 7, "purchase-anniversary": 7}
    assert sorted(p[:4] for p in world.outbox()) == sorted(p[:4] for p in whole)
    with db.read() as session:
        ids = list(session.execute(select(OutboxItem.message_id)).scalars())
    assert len(set(ids)) == len(ids) and all(i.startswith("<") and i.endswith(">") and "@" in i for i in ids)

    again = planner.plan(db, world.settings, rules, utc("2026-03-01T06:00"))
    assert again.planned == 14 and again.inserted == 0


def test_two_purchases_at_the_first_moment_make_one_anniversary(world: World, db: Database) -> None:
    customer = world.customer("twice@x.example", timezone="UTC")
    world.purchase(customer, "2024-05-10T09:00", product="Panel")
    world.purchase(customer, "2024-05-10T09:00", product="Inverter")  # same order, same instant
    world.purchase(customer, "2025-05-11T09:00", product="Cable")  # not the first: no anniversary of its own
    rules = world.rules(BIRTHDAYS_AND_FIRST_PURCHASES)
    assert world.plan(rules, "2026-05-10T00:00") == [
        Planned("purchase-anniversary", "twice@x.example", "year:2026", "2026-05-10T10:00Z"),
    ]
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(OutboxItem)).scalar_one() == 1
