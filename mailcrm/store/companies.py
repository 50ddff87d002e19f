"""Companies and the mail domains that identify them."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from mailcrm.errors import ConflictError
from mailcrm.store.models import Company, CompanyDomain


def get_or_create(session: Session, name: str, cache: dict[str, int] | None = None) -> int:
    """The id of the company called `name` (case-insensitive), created when missing."""
    key = name.casefold()
    if cache is not None and key in cache:
        return cache[key]
    row = session.exec(select(Company).where(func.lower(Company.name) == name.lower())).first()
    if row is None:
        row = Company(name=name)
        session.add(row)
        session.flush()
    assert row.id is not None
    if cache is not None:
        cache[key] = row.id
    return row.id


def add_domain(session: Session, company_id: int, domain: str) -> None:
    """Attach a normalised domain; a domain belongs to one company only."""
    current = session.exec(select(CompanyDomain).where(CompanyDomain.domain == domain)).first()
    if current is None:
        session.add(CompanyDomain(company_id=company_id, domain=domain))
        session.flush()
    elif current.company_id != company_id:
        owner = session.get(Company, current.company_id)
        raise ConflictError(
            f"domain {domain} already belongs to company {owner.name if owner else current.company_id!r}"
        )


def domains_of(session: Session, company_id: int) -> list[str]:
    query = select(CompanyDomain.domain).where(CompanyDomain.company_id == company_id)
    return sorted(session.exec(query))
