"""Purchases: recording them idempotently, and reading a customer's back.

Every way in (`purchases add`, a CSV import) records through the same statement,
INSERT ... ON CONFLICT (customer, dedupe key) DO NOTHING, so a repeated purchase is
recognised the same way everywhere; and a lead with a purchase becomes a customer.

A draft's date is placed in its customer's zone here (`domain.purchases.place`), the
first moment that zone is known: the customer's `timezone`, else `defaults.timezone`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Select, Table, func, literal_column, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from mailcrm.domain.purchases import PlacedPurchase, PurchaseDraft, place
from mailcrm.store.models import Customer, CustomerStatus, Purchase
from mailcrm.store.types import utcnow

TABLE: Table = Purchase.__table__  # type: ignore[attr-defined]
_CUSTOMER: Table = Customer.__table__  # type: ignore[attr-defined]

# The columns `values` fills, in table order; `created_at` is added per statement.
COLUMNS = (
    "customer_id",
    "purchased_at",
    "purchased_on",
    "has_time",
    "product",
    "quantity",
    "amount_minor",
    "currency",
    "order_ref",
    "dedupe_key",
)
_PROMOTE_CHUNK = 5_000


def insert_statement(dialect: Dialect) -> Insert:
    """INSERT into purchase that skips a row whose (customer, dedupe key) is stored."""
    if dialect.name == "sqlite":
        return sqlite.insert(TABLE).on_conflict_do_nothing(index_elements=["customer_id", "dedupe_key"])
    if dialect.name == "postgresql":
        return postgresql.insert(TABLE).on_conflict_do_nothing(constraint="uq_purchase_customer_dedupe")
    raise NotImplementedError(f"purchases need SQLite or PostgreSQL, not {dialect.name}")


class Placer:
    """Places drafts for customers of known zones, remembering each (date, zone) it placed:
    an import of 300,000 date-only lines meets few distinct dates and zones."""

    def __init__(self, zones: dict[int, str | None], default_timezone: str) -> None:
        self.zones = zones
        self.default_timezone = default_timezone
        self._days: dict[tuple[date, str], PlacedPurchase] = {}

    def __call__(self, customer_id: int, when: date | datetime) -> PlacedPurchase:
        zone = self.zones.get(customer_id) or self.default_timezone
        if isinstance(when, datetime):
            return place(when, zone)
        found = self._days.get((when, zone))
        if found is None:
            found = self._days[(when, zone)] = place(when, zone)
        return found


def customer_zones(connection: Connection, customer_ids: Iterable[int]) -> dict[int, str | None]:
    """customer id → its timezone (None: `defaults.timezone` applies), for the few customers
    of `purchases add`; the importer reads a batch's zones with `bulk.rows_where_in`.
    Store-internal: `connection` is that of the calling store function's session."""
    ids = sorted(set(customer_ids))
    found: dict[int, str | None] = {}
    for start in range(0, len(ids), _PROMOTE_CHUNK):
        chunk = ids[start : start + _PROMOTE_CHUNK]
        query = select(_CUSTOMER.c.id, _CUSTOMER.c.timezone).where(_CUSTOMER.c.id.in_(chunk))
        found.update({int(row[0]): row[1] for row in connection.execute(query)})
    return found


def values(
    customer_id: int, draft: PurchaseDraft, placed: PlacedPurchase, dedupe_key: str | None = None
) -> tuple[Any, ...]:
    """One purchase row, in `COLUMNS` order (the dedupe key last; pass it if already known)."""
    return (
        customer_id,
        placed.purchased_at,
        placed.purchased_on,
        placed.has_time,
        draft.product,
        draft.quantity,
        draft.amount_minor,
        draft.currency,
        draft.order_ref,
        draft.dedupe_key if dedupe_key is None else dedupe_key,
    )


def promote_leads(connection: Connection, customer_ids: Iterable[int], now: datetime) -> None:
    """Leads among `customer_ids` (each has a purchase) become customers (store-internal:
    `connection` is that of the calling store function's session)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    promote = (
        update(_CUSTOMER)
        .where(_CUSTOMER.c.status == CustomerStatus.LEAD.value)
        .values(status=CustomerStatus.CUSTOMER.value, updated_at=now)
    )
    if connection.dialect.name == "sqlite":
        # One JSON array rather than an IN list as long as the batch: the statement text
        # stays the same, so sqlite3's statement cache does not fill with one per batch.
        members: Select[Any] = select(literal_column("value")).select_from(func.json_each(json.dumps(ids)))
        connection.execute(promote.where(_CUSTOMER.c.id.in_(members)))
        return
    for start in range(0, len(ids), _PROMOTE_CHUNK):
        connection.execute(promote.where(_CUSTOMER.c.id.in_(ids[start : start + _PROMOTE_CHUNK])))


def add_many(session: Session, items: Sequence[tuple[int, PurchaseDraft]], *, default_timezone: str) -> int:
    """Record `(customer_id, draft)` pairs, skipping ones already stored; returns how many
    were new. A customer without a timezone is in `default_timezone` (`defaults.timezone`)."""
    if not items:
        return 0
    now = utcnow()
    connection = session.connection()
    placer = Placer(customer_zones(connection, (c for c, _ in items)), default_timezone)
    rows: dict[tuple[int, str], tuple[Any, ...]] = {}
    for customer_id, draft in items:
        row = values(customer_id, draft, placer(customer_id, draft.when))
        rows.setdefault((customer_id, row[-1]), row)
    statement = insert_statement(connection.dialect).returning(TABLE.c.id)
    params = [dict(zip(COLUMNS, row, strict=True), created_at=now) for row in rows.values()]
    inserted = len(connection.execute(statement, params).all())
    promote_leads(connection, (customer_id for customer_id, _ in items), now)
    return inserted


def add(session: Session, customer_id: int, draft: PurchaseDraft, *, default_timezone: str) -> bool:
    """Record one purchase; False when the customer already has it (same dedupe key)."""
    return add_many(session, [(customer_id, draft)], default_timezone=default_timezone) == 1


def for_customer(session: Session, customer_id: int, limit: int | None = None) -> list[Purchase]:
    """A customer's purchases, newest first."""
    query = (
        select(Purchase)
        .where(Purchase.customer_id == customer_id)
        .order_by(col(Purchase.purchased_at).desc(), col(Purchase.id).desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))
