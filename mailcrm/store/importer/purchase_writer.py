"""Recording purchase rows for the customers their addresses name; repeats are skipped.

A row's date is placed in its customer's zone here, once the address has named the
customer (`store.purchases.Placer`): a date without a time is that customer's calendar
date. The dedupe key was computed in validation and does not depend on the zone.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from mailcrm.store import purchases
from mailcrm.store.importer.bulk import CUSTOMER, customers_by_address, insert_rows, rows_where_in
from mailcrm.store.importer.report import ImportReport, RowError
from mailcrm.store.importer.validate import Batch, PurchaseRow
from mailcrm.store.types import utcnow


class PurchaseWriter:
    """Records each validated batch of purchases for the customers their addresses name."""

    def __init__(self, report: ImportReport, default_timezone: str) -> None:
        self.report = report
        self.default_timezone = default_timezone

    def __call__(self, session: Session, batch: Batch[PurchaseRow]) -> None:
        connection = session.connection()
        owner_of = customers_by_address(connection, {r.email for r in batch.rows})
        zones = rows_where_in(connection, CUSTOMER, ("id", "timezone"), "id", sorted(set(owner_of.values())))
        place = purchases.Placer({int(id_): zone for id_, zone in zones}, self.default_timezone)
        rows: dict[tuple[int, str], tuple[Any, ...]] = {}
        for row in batch.rows:
            customer_id = owner_of.get(row.email)
            if customer_id is None:
                reason = f"no customer with address {row.email}; import customers first"
                batch.errors.append(RowError(row.line, reason))
            else:
                key = (customer_id, row.dedupe_key)
                if key not in rows:
                    placed = place(customer_id, row.draft.when)
                    rows[key] = purchases.values(customer_id, row.draft, placed, row.dedupe_key)
        found = sum(1 for row in batch.rows if row.email in owner_of)
        # In index order, so each index page is visited once per batch.
        ordered = [rows[key] for key in sorted(rows)]
        now = utcnow()
        statement = purchases.insert_statement(connection.dialect)
        added = insert_rows(
            connection, purchases.TABLE, purchases.COLUMNS, ordered, statement=statement, created_at=now
        )
        purchases.promote_leads(connection, (key[0] for key in rows), now)
        self.report.created += added
        self.report.unchanged += found - added
