"""What the demo prints: counts that show the data landed, and one customer's story."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from mailcrm.domain.values import from_minor_units
from mailcrm.store import overview


def summarize(session: Session) -> dict[str, Any]:
    """Counts by language, lead source and status, and revenue per currency."""
    found = overview.totals(session)
    languages = {language or "unknown": 0 for language in found.languages}
    for language, count in found.languages.items():
        languages[language or "unknown"] += count
    revenue = {
        currency: str(from_minor_units(total, currency)) for currency, total in found.revenue_minor.items()
    }
    return {
        "customers": sum(found.statuses.values()),
        "companies": found.companies,
        "purchases": found.purchases,
        "notes": found.notes,
        "by_language": dict(sorted(languages.items(), key=lambda kv: str(kv[0]))),
        "by_lead_source": dict(sorted(found.lead_sources.items(), key=lambda kv: str(kv[0]))),
        "by_status": dict(sorted(found.statuses.items())),
        "revenue": revenue,
    }


def busiest_customer(session: Session) -> int | None:
    """The customer with the most purchases: the most interesting timeline to show."""
    return overview.busiest_buyer(session)
