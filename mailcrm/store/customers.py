"""Customer queries: find by id or address, create, edit, archive, search, and the read view.

The read view (`CustomerView`) is the `--json` shape of `customers list/show/export`:
its field names are a scripting interface and change only with a major version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from mailcrm.domain.addresses import InvalidAddress, normalize_address
from mailcrm.domain.customers import CustomerDraft
from mailcrm.errors import ConflictError, NotFoundError, ValidationError
from mailcrm.store import companies
from mailcrm.store.models import (
    Company,
    Customer,
    CustomerStatus,
    CustomerTag,
    EmailAddress,
    Purchase,
    Salesperson,
    Suppression,
    table_of,
)
from mailcrm.store.salespeople import owner_ids, require_owner
from mailcrm.store.types import utcnow


class AddressView(BaseModel):
    address: str
    primary: bool
    suppressed: bool
    suppression_reason: str | None = None


class CustomerView(BaseModel):
    """One customer as printed by `--json`."""

    id: int
    name: str
    email: str | None
    emails: list[AddressView]
    phone: str | None
    birthday: date | None
    timezone: str | None
    language: str | None
    owner: str | None
    lead_source: str | None
    status: str
    company: str | None
    tags: list[str]
    custom: dict[str, Any]
    purchases: int
    created_at: datetime
    updated_at: datetime


def resolve(session: Session, ref: str) -> Customer:
    """A customer named by numeric id or by any of its email addresses."""
    text = ref.strip()
    if text.isdigit():
        customer = session.get(Customer, int(text))
        if customer is None:
            raise NotFoundError(f"no customer with id {text}", hint="see `mailcrm customers list`")
        return customer
    try:
        address = normalize_address(text)
    except InvalidAddress:
        raise NotFoundError(
            f"{ref!r} is neither a customer id nor an email address",
            hint="name a customer by id (e.g. 42) or email (e.g. ann@example.org)",
        ) from None
    row = session.exec(select(EmailAddress).where(EmailAddress.address == address)).first()
    if row is None:
        raise NotFoundError(f"no customer with address {address}", hint="see `mailcrm customers list`")
    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    return customer


def _check_addresses_free(session: Session, addresses: Sequence[str], customer_id: int | None) -> None:
    if not addresses:
        return
    query = select(EmailAddress).where(col(EmailAddress.address).in_(addresses))
    for row in session.exec(query):
        if row.customer_id != customer_id:
            raise ConflictError(
                f"address {row.address} already belongs to customer {row.customer_id}",
                hint=f"edit customer {row.customer_id} instead, or remove the address there first",
            )


def _apply(session: Session, customer: Customer, draft: CustomerDraft, owners: dict[str, int]) -> None:
    for name in ("name", "phone", "birthday", "timezone", "language", "lead_source", "status"):
        value = getattr(draft, name)
        if value is not None:
            setattr(customer, name, value)
    if draft.owner is not None:
        customer.owner_id = require_owner(owners, draft.owner)
    if draft.company is not None:
        customer.company_id = companies.get_or_create(session, draft.company)
    if draft.custom:
        customer.custom = {**(customer.custom or {}), **draft.custom}


def create(session: Session, draft: CustomerDraft) -> Customer:
    """Insert a new customer with its addresses and tags."""
    if not draft.name or not draft.emails:
        raise ValidationError("a new customer needs a name and at least one email address")
    _check_addresses_free(session, draft.emails, None)
    customer = Customer(name=draft.name)
    _apply(session, customer, draft, owner_ids(session))
    session.add(customer)
    session.flush()
    assert customer.id is not None
    for index, address in enumerate(draft.emails):
        session.add(EmailAddress(customer_id=customer.id, address=address, is_primary=index == 0))
    for tag in draft.tags:
        session.add(CustomerTag(customer_id=customer.id, tag=tag))
    session.flush()
    return customer


def update(
    session: Session,
    customer: Customer,
    draft: CustomerDraft,
    *,
    remove_emails: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    primary: str | None = None,
) -> Customer:
    """Change the given fields, add and remove addresses and tags."""
    assert customer.id is not None
    _check_addresses_free(session, draft.emails, customer.id)
    _apply(session, customer, draft, owner_ids(session))
    current = {row.address: row for row in _addresses(session, customer.id)}
    for address in draft.emails:
        if address not in current:
            row = EmailAddress(customer_id=customer.id, address=address, is_primary=not current)
            session.add(row)
            current[address] = row
    for address in remove_emails:
        if address not in current:
            raise NotFoundError(f"customer {customer.id} has no address {address}")
        session.delete(current.pop(address))
    if not current:
        raise ValidationError("a customer must keep at least one email address")
    if primary is not None:
        if primary not in current:
            raise NotFoundError(f"customer {customer.id} has no address {primary}")
        for address, row in current.items():
            row.is_primary = address == primary
    elif not any(row.is_primary for row in current.values()):
        next(iter(current.values())).is_primary = True
    existing_tags = set(tags_of(session, [customer.id]).get(customer.id, []))
    for tag in draft.tags:
        if tag not in existing_tags:
            session.add(CustomerTag(customer_id=customer.id, tag=tag))
    if remove_tags:
        session.execute(
            delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer.id, col(CustomerTag.tag).in_(remove_tags)
            )
        )
    customer.updated_at = utcnow()
    session.add(customer)
    session.flush()
    return customer


def archive(session: Session, customer: Customer) -> None:
    """Archived customers keep their history but get no automated email."""
    customer.status = CustomerStatus.ARCHIVED.value
    customer.updated_at = utcnow()
    session.add(customer)
    session.flush()


def _addresses(session: Session, customer_id: int) -> list[EmailAddress]:
    query = (
        select(EmailAddress)
        .where(EmailAddress.customer_id == customer_id)
        .order_by(col(EmailAddress.is_primary).desc(), col(EmailAddress.id))
    )
    return list(session.exec(query))


def tags_of(session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = defaultdict(list)
    if ids:
        query = (
            select(CustomerTag.customer_id, CustomerTag.tag)
            .where(col(CustomerTag.customer_id).in_(ids))
            .order_by(col(CustomerTag.tag))
        )
        for customer_id, tag in session.exec(query):
            result[customer_id].append(tag)
    return result


def search(
    session: Session,
    text: str | None = None,
    *,
    tag: str | None = None,
    owner: str | None = None,
    status: str | None = None,
    include_archived: bool = False,
    limit: int | None = 100,
    offset: int = 0,
) -> list[Customer]:
    """Customers whose name, any address or company contains `text` (case-insensitive).

    The text is literal: `%`, `_` and the escape character match themselves (LIKE with
    ESCAPE), so `customers list %` finds the customers whose name has a percent sign.
    """
    query = select(Customer)
    if text and text.strip():
        needle = text.strip().lower()
        by_address = select(EmailAddress.customer_id).where(
            col(EmailAddress.address).contains(needle, autoescape=True)
        )
        by_company = select(Company.id).where(func.lower(Company.name).contains(needle, autoescape=True))
        query = query.where(
            or_(
                func.lower(Customer.name).contains(needle, autoescape=True),
                col(Customer.id).in_(by_address),
                col(Customer.company_id).in_(by_company),
            )
        )
    if tag:
        query = query.where(
            col(Customer.id).in_(select(CustomerTag.customer_id).where(CustomerTag.tag == tag.lower()))
        )
    if owner:
        query = query.where(
            col(Customer.owner_id).in_(
                select(Salesperson.id).where(Salesperson.email == normalize_address(owner))
            )
        )
    if status:
        query = query.where(Customer.status == status)
    elif not include_archived:
        query = query.where(Customer.status != CustomerStatus.ARCHIVED.value)
    query = query.order_by(col(Customer.id)).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def views(session: Session, customers: Iterable[Customer]) -> list[CustomerView]:
    """Build read views for many customers with a fixed number of queries."""
    return _views(session, list(customers))


def views_by_id(session: Session, ids: Sequence[int]) -> dict[int, CustomerView]:
    """The read views of these customers (missing ids left out), read as plain rows:
    the sender reads a thousand at a time, where ORM objects cost more than the queries."""
    table = table_of(Customer)
    rows = [
        row
        for chunk in _chunks(sorted(set(ids)))
        for row in session.execute(select(*table.c).where(table.c.id.in_(chunk)))
    ]
    return {view.id: view for view in _views(session, rows)}


def _chunks(values: Sequence[int], size: int = 1000) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _views(session: Session, rows: Sequence[Any]) -> list[CustomerView]:
    """Views of customer rows (ORM objects or Core rows: read by column name)."""
    ids = [c.id for c in rows if c.id is not None]
    if not ids:
        return []
    addresses: dict[int, list[Any]] = defaultdict(list)
    query = (
        select(EmailAddress.customer_id, EmailAddress.address, EmailAddress.is_primary)
        .where(col(EmailAddress.customer_id).in_(ids))
        .order_by(col(EmailAddress.is_primary).desc(), col(EmailAddress.id))
    )
    for address in session.execute(query):
        addresses[address.customer_id].append(address)
    all_addresses = [a.address for group in addresses.values() for a in group]
    suppressed = dict(
        session.exec(
            select(Suppression.address, Suppression.reason).where(col(Suppression.address).in_(all_addresses))
        ).all()
    )
    tags = tags_of(session, ids)
    owners = dict(session.exec(select(Salesperson.id, Salesperson.email)).all())
    company_ids = {c.company_id for c in rows if c.company_id is not None}
    company_names = dict(
        session.exec(select(Company.id, Company.name).where(col(Company.id).in_(company_ids))).all()
    )
    purchase_counts = dict(
        session.exec(
            select(Purchase.customer_id, func.count())
            .where(col(Purchase.customer_id).in_(ids))
            .group_by(col(Purchase.customer_id))
        ).all()
    )
    result = []
    for customer in rows:
        assert customer.id is not None
        own = addresses.get(customer.id, [])
        result.append(
            CustomerView(
                id=customer.id,
                name=customer.name,
                email=own[0].address if own else None,
                emails=[
                    AddressView(
                        address=a.address,
                        primary=a.is_primary,
                        suppressed=a.address in suppressed,
                        suppression_reason=suppressed.get(a.address),
                    )
                    for a in own
                ],
                phone=customer.phone,
                birthday=customer.birthday,
                timezone=customer.timezone,
                language=customer.language,
                owner=owners.get(customer.owner_id) if customer.owner_id else None,
                lead_source=customer.lead_source,
                status=customer.status,
                company=company_names.get(customer.company_id) if customer.company_id else None,
                tags=tags.get(customer.id, []),
                custom=customer.custom or {},
                purchases=int(purchase_counts.get(customer.id, 0)),
                created_at=customer.created_at,
                updated_at=customer.updated_at,
            )
        )
    return result


def iter_all(session: Session, batch: int = 1000, include_archived: bool = True) -> Iterator[CustomerView]:
    """Every customer in id order, in batches, so exports stay flat in memory."""
    last_id = 0
    while True:
        query = select(Customer).where(col(Customer.id) > last_id)
        if not include_archived:
            query = query.where(Customer.status != CustomerStatus.ARCHIVED.value)
        chunk = list(session.exec(query.order_by(col(Customer.id)).limit(batch)))
        if not chunk:
            return
        yield from views(session, chunk)
        last_id = chunk[-1].id or last_id
        session.expunge_all()


def custom_keys(session: Session) -> list[str]:
    """Every custom field name in use, sorted (the extra columns of a CSV export)."""
    keys: set[str] = set()
    for custom in session.exec(select(Customer.custom)):
        if custom:
            keys.update(custom)
    return sorted(keys)
