"""What the demo prints: counts that show the data landed, and one customer's story."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailcrm.domain.values import from_minor_units
from mailcrm.store.models import Company, Customer, Note, Purchase


def summarize(session: Session) -> dict[str, Any]:
    """Counts by language, lead source and status, and revenue per currency."""
    languages = Counter(row or "unknown" for row in session.exec(select(Customer.language)))
    sources = Counter(row for row in session.exec(select(Customer.lead_source)))
    statuses = Counter(row for row in session.exec(select(Customer.status)))
    revenue = {
        currency: str(from_minor_units(int(total), currency))
        for currency, total in session.exec(
            select(Purchase.currency, func.sum(Purchase.amount_minor)).group_by(col(Purchase.currency))
        )
    }
    return {
        "customers": sum(statuses.values()),
        "companies": len(list(session.exec(select(Company.id)))),
        "purchases": len(list(session.exec(select(Purchase.id)))),
        "notes": len(list(session.exec(select(Note.id)))),
        "by_language": dict(sorted(languages.items(), key=lambda kv: str(kv[0]))),
        "by_lead_source": dict(sorted(sources.items(), key=lambda kv: str(kv[0]))),
        "by_status": dict(sorted(statuses.items())),
        "revenue": revenue,
    }


def busiest_customer(session: Session) -> int | None:
    """The customer with the most purchases: the most interesting timeline to show."""
    row = session.exec(
        select(Purchase.customer_id, func.count().label("n"))
        .group_by(col(Purchase.customer_id))
        .order_by(func.count().desc(), col(Purchase.customer_id))
        .limit(1)
    ).first()
    return int(row[0]) if row else None
