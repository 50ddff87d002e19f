"""What the store holds, counted and picked out: the reads behind the demo's report.

Each function answers one question in one or two queries over whole tables; the demo
(`mailcrm.demo`) turns the answers into its JSON and picks the customer to show. The
store is the demo's own, a few hundred rows: these reads are not meant for a large one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailcrm.store.models import (
    Company,
    Customer,
    CustomerStatus,
    EmailAddress,
    Note,
    OutboxItem,
    Purchase,
    Salesperson,
    Suppression,
    TimelineEvent,
)


@dataclass(frozen=True)
class Totals:
    """Customers by language, lead source and status; row counts; revenue per currency."""

    languages: Counter[str | None]
    lead_sources: Counter[str | None]
    statuses: Counter[str]
    companies: int
    purchases: int
    notes: int
    revenue_minor: dict[str, int]


def totals(session: Session) -> Totals:
    """How much of each kind the store holds (the demo's `summary` section)."""
    revenue = session.exec(
        select(Purchase.currency, func.sum(Purchase.amount_minor)).group_by(col(Purchase.currency))
    )
    return Totals(
        languages=Counter(session.exec(select(Customer.language))),
        lead_sources=Counter(session.exec(select(Customer.lead_source))),
        statuses=Counter(session.exec(select(Customer.status))),
        companies=len(list(session.exec(select(Company.id)))),
        purchases=len(list(session.exec(select(Purchase.id)))),
        notes=len(list(session.exec(select(Note.id)))),
        revenue_minor={currency: int(total) for currency, total in revenue},
    )


def busiest_buyer(session: Session) -> int | None:
    """The customer with the most purchases (the lowest id among equals); None without any."""
    row = session.exec(
        select(Purchase.customer_id, func.count().label("n"))
        .group_by(col(Purchase.customer_id))
        .order_by(func.count().desc(), col(Purchase.customer_id))
        .limit(1)
    ).first()
    return int(row[0]) if row else None


def purchases_per_customer(session: Session) -> dict[int, int]:
    """Customer id → how many purchases, for customers with at least one."""
    rows = session.exec(select(Purchase.customer_id, func.count()).group_by(col(Purchase.customer_id)))
    return {int(customer_id): int(count) for customer_id, count in rows}


def timeline_kinds(session: Session, kinds: Collection[str]) -> list[tuple[int, str]]:
    """(customer id, kind) of every timeline event of one of `kinds`, one pair per event."""
    rows = session.exec(
        select(TimelineEvent.customer_id, TimelineEvent.kind).where(col(TimelineEvent.kind).in_(kinds))
    )
    return [(int(customer_id), kind) for customer_id, kind in rows]


def leads(session: Session) -> list[tuple[Customer, str, str | None]]:
    """Every lead with its primary address and company name, oldest first."""
    rows = session.exec(
        select(Customer, EmailAddress.address, Company.name)
        .join(EmailAddress, col(EmailAddress.customer_id) == col(Customer.id))
        .join(Company, col(Company.id) == col(Customer.company_id), isouter=True)
        .where(Customer.status == CustomerStatus.LEAD.value, col(EmailAddress.is_primary))
        .order_by(col(Customer.id))
    )
    return list(rows)


def addresses(session: Session) -> list[tuple[Customer, str]]:
    """Every address with its customer, in the order the addresses were stored."""
    rows = session.exec(
        select(Customer, EmailAddress.address)
        .join(EmailAddress, col(EmailAddress.customer_id) == col(Customer.id))
        .order_by(col(EmailAddress.id))
    )
    return list(rows)


def suppressions(session: Session) -> list[tuple[Suppression, int | None]]:
    """Every suppressed address, oldest first, with the customer that owns it (None: nobody)."""
    owners = {
        row.address: row.customer_id
        for row in session.exec(
            select(EmailAddress).join(Suppression, col(Suppression.address) == col(EmailAddress.address))
        )
    }
    return [
        (row, owners.get(row.address))
        for row in session.exec(select(Suppression).order_by(col(Suppression.id)))
    ]


def outbox_by_rule(session: Session, now: datetime) -> list[tuple[str, str, bool, int]]:
    """(rule, state, due after `now`, how many) for every outbox row, by rule."""
    later = col(OutboxItem.due_at) > now
    rows = session.exec(
        select(OutboxItem.rule, OutboxItem.state, later, func.count())
        .group_by(col(OutboxItem.rule), col(OutboxItem.state), later)
        .order_by(col(OutboxItem.rule))
    )
    return [(rule, state, bool(is_later), int(count)) for rule, state, is_later, count in rows]


def sent_templates(session: Session) -> Counter[str]:
    """Template name → how many emails sent with it."""
    return Counter(session.exec(select(OutboxItem.template).where(OutboxItem.state == "sent")))


def contacts(session: Session, first: int | None) -> list[tuple[int, str, str, str | None]]:
    """(customer id, name, primary address, owner's email or None) of every customer with a
    primary address: customer `first` first, then by id."""
    rows = session.exec(
        select(Customer.id, Customer.name, EmailAddress.address, Salesperson.email)
        .join(EmailAddress, col(EmailAddress.customer_id) == col(Customer.id))
        .join(Salesperson, col(Salesperson.id) == col(Customer.owner_id), isouter=True)
        .where(col(EmailAddress.is_primary))
        .order_by(col(Customer.id) != first, col(Customer.id))
    )
    return [(int(found), name, address, owner) for found, name, address, owner in rows if found is not None]


def customer(session: Session, customer_id: int) -> Customer | None:
    """The customer with this id, or None."""
    return session.get(Customer, customer_id)
