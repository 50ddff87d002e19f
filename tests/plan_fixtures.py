"""A small world for planning tests: customers, purchases, timeline events and mail in a
real database, rules from a real rules folder, and what the planner makes of them.

Rules are written as YAML into the rules folder of a `Settings` and loaded with
`planner.configured_rules` (what the daemon and `mailcrm plan` do); planning goes
through `planner.plan` (outbox rows) or `planner.forecast` (writes nothing). Results come
back as `Planned` tuples naming each customer by their primary email and each due time
as compact UTC text, so a test can compare a whole result with one literal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select, update
from sqlmodel import col

from mailcrm import planner, wiring
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.purchases import purchase_from_fields
from mailcrm.domain.rules import RuleSet
from mailcrm.settings import SalespersonSettings, Settings
from mailcrm.store import customers, purchases
from mailcrm.store.db import Database
from mailcrm.store.models import (
    Customer,
    EmailAddress,
    Message,
    MessageLink,
    OutboxItem,
    Purchase,
    TimelineEvent,
)
from mailcrm.store.salespeople import sync_team

ALICE = "alice@acme.example"
BOB = "bob@acme.example"
CREATED = "2020-01-01T00:00"


class Planned(NamedTuple):
    """One planned email as a user sees it in `mailcrm plan --json` or `outbox list`."""

    rule: str
    customer: str  # primary email
    occurrence: str
    due: str  # UTC, "YYYY-MM-DDTHH:MMZ"
    state: str = "due"


def utc(text: str) -> datetime:
    """`"2026-06-10T12:00"` (or a date) as an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stamp(value: datetime) -> str:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%MZ")


def make_settings(base: Path) -> Settings:
    """Two salespeople; rules in `base/rules`, the packaged templates; defaults otherwise."""
    (base / "rules").mkdir(parents=True, exist_ok=True)
    return Settings(
        salespeople=[
            SalespersonSettings(name="Alice", email=ALICE),
            SalespersonSettings(name="Bob", email=BOB),
        ],
        source=base / "mailcrm.yaml",
    )


@dataclass
class World:
    db: Database
    settings: Settings

    # --- facts ------------------------------------------------------------------------

    def customer(self, email: str, since: str = CREATED, **fields: str) -> int:
        """A new customer (fields as `customers add` takes them), on record since `since`
        (not the wall clock, so `customer_since` anniversaries are deterministic)."""
        values = {"name": email.partition("@")[0].title(), "email": email, **fields}
        with self.db.write() as session:
            sync_team(session, wiring.team(self.settings))
            created = customers.create(session, draft_from_fields(values, new_record=True))
            assert created.id is not None
            backdate = update(Customer).where(col(Customer.id) == created.id).values(created_at=utc(since))
            session.execute(backdate)
            return created.id

    def purchase(
        self, customer: int, at: str, product: str = "Panel", amount: str = "100", currency: str = "THB"
    ) -> int:
        """A purchase recorded the way `purchases add` records it (a lead becomes a customer);
        returns its id. A date-time without an offset is UTC here (these tests state
        instants); a date alone is the customer's calendar date, as everywhere."""
        if len(at) > 10 and datetime.fromisoformat(at).tzinfo is None:
            at += "+00:00"
        draft = purchase_from_fields(
            {"date": at, "product": product, "amount": amount, "currency": currency},
            default_currency="THB",
            default_timezone="UTC",
        )
        with self.db.write() as session:
            assert purchases.add(session, customer, draft, default_timezone=self.settings.defaults.timezone)
            found = session.execute(
                select(col(Purchase.id)).where(
                    col(Purchase.customer_id) == customer, col(Purchase.dedupe_key) == draft.dedupe_key
                )
            ).scalar_one()
            assert isinstance(found, int)
            return found

    def event(self, customer: int, kind: str, at: str) -> int:
        """A timeline event (opened, clicked, attended, reply, auto_reply, ...); returns its id."""
        with self.db.write() as session:
            row = TimelineEvent(customer_id=customer, kind=kind, at=utc(at))
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id

    def outbound(self, customer: int, message_id: str, at: str) -> None:
        """A message sent to the customer (as the sync or the sender records it)."""
        with self.db.write() as session:
            message = Message(message_id=message_id, direction="out", sent_at=utc(at), subject="Hello")
            session.add(message)
            session.flush()
            assert message.id is not None
            session.add(MessageLink(message_pk=message.id, customer_id=customer, role="to"))

    # --- rules and planning -----------------------------------------------------------

    def rules(self, yaml: str, file: str = "team.yaml") -> RuleSet:
        """Write one rule file into the rules folder and load the folder as the daemon does."""
        (self.settings.rules_path() / file).write_text(textwrap.dedent(yaml), encoding="utf-8")
        return planner.configured_rules(self.settings)

    def forecast(self, rules: RuleSet, at: str, days: float) -> list[Planned]:
        emails = planner.forecast(self.db, self.settings, rules, utc(at), days)
        return self._named(emails)

    def plan(self, rules: RuleSet, now: str) -> list[Planned]:
        """One planning pass at `now`; returns the whole outbox afterwards."""
        planner.plan(self.db, self.settings, rules, utc(now))
        return self.outbox()

    def outbox(self) -> list[Planned]:
        with self.db.read() as session:
            rows = list(session.execute(select(OutboxItem)).scalars())
        return self._named(rows)

    def deliver(self, rule: str) -> dict[str, str]:
        """Record each outbox email of `rule` as sent at its due time (what the sender leaves
        behind: an outbound message with the row's Message-ID); returns email → Message-ID."""
        with self.db.read() as session:
            rows = list(session.execute(select(OutboxItem).where(col(OutboxItem.rule) == rule)).scalars())
        sent: dict[str, str] = {}
        for row in rows:
            self.outbound(row.customer_id, row.message_id, stamp(row.due_at)[:-1])
            sent[self._email(row.customer_id)] = row.message_id
        return sent

    def _email(self, customer: int) -> str:
        with self.db.read() as session:
            found = session.execute(
                select(col(EmailAddress.address)).where(
                    col(EmailAddress.customer_id) == customer, col(EmailAddress.is_primary)
                )
            ).scalar_one()
            return str(found)

    def _named(self, emails: Iterable[PlannedEmail | OutboxItem]) -> list[Planned]:
        with self.db.read() as session:
            query = select(col(EmailAddress.customer_id), col(EmailAddress.address))
            primary: dict[int, str] = {
                row[0]: row[1] for row in session.execute(query.where(col(EmailAddress.is_primary)))
            }
        found = [
            Planned(e.rule, primary[e.customer_id], e.occurrence, stamp(e.due_at), e.state) for e in emails
        ]
        return sorted(found, key=lambda p: (p.due, p.rule, p.customer, p.occurrence))
