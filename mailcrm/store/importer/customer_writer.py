"""Merging customer rows into the database: matched by any address, grouped within a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlmodel import Session

from mailcrm.store.importer.bulk import (
    ADDRESS,
    COMPANY,
    CUSTOMER,
    TAG,
    chunks,
    customers_by_address,
    insert_rows,
    rows_where_in,
)
from mailcrm.store.importer.report import ImportReport, RowError
from mailcrm.store.importer.validate import Batch, CustomerRow
from mailcrm.store.models import CustomerStatus
from mailcrm.store.types import utcnow

# Customer columns a row can set, as `CustomerDraft` attributes of the same name.
_SCALARS = ("name", "phone", "birthday", "timezone", "language", "lead_source", "status")
# Columns in table order, as the bulk inserts need them.
_COLUMNS = (
    "name",
    "company_id",
    "phone",
    "birthday",
    "timezone",
    "language",
    "owner_id",
    "lead_source",
    "status",
)
_CUSTOMER_COLUMNS = ("id", *_COLUMNS, "custom")
_ADDRESS_COLUMNS = ("customer_id", "address", "is_primary")
_TAG_COLUMNS = ("customer_id", "tag")


class _Group:
    """Rows of one batch that are one customer, because they share addresses."""

    __slots__ = ("customer_id", "parent", "rows")

    def __init__(self, customer_id: int | None) -> None:
        self.customer_id = customer_id
        self.rows: list[CustomerRow] = []
        self.parent: _Group | None = None

    def root(self) -> _Group:
        group = self
        while group.parent is not None:
            group = group.parent
        return group


@dataclass(slots=True)
class _State:
    """A customer as the rows of a batch leave it, compared with how it was stored."""

    values: dict[str, Any]
    custom: dict[str, Any]
    tags: dict[str, None]
    emails: dict[str, None]

    @classmethod
    def new(cls, row: CustomerRow, company_id: int | None) -> _State:
        """The state a new customer's first row gives it."""
        values = {
            "name": row.name,
            "company_id": company_id,
            "phone": row.phone,
            "birthday": row.birthday,
            "timezone": row.timezone,
            "language": row.language,
            "owner_id": row.owner_id,
            "lead_source": row.lead_source,
            "status": row.status,
        }
        return cls(values, dict(row.custom), dict.fromkeys(row.tags), dict.fromkeys(row.emails))

    def copy(self) -> _State:
        return _State(dict(self.values), dict(self.custom), dict(self.tags), dict(self.emails))

    def apply(self, row: CustomerRow, company_id: int | None) -> bool:
        """Overlay a row: given values overwrite, tags and addresses add; True if it changed."""
        values = self.values
        changed = False
        for name, value in zip(_SCALARS, _scalars(row), strict=True):
            if value is not None and values[name] != value:
                values[name] = value
                changed = True
        if row.owner_id is not None and values["owner_id"] != row.owner_id:
            values["owner_id"] = row.owner_id
            changed = True
        if company_id is not None and values["company_id"] != company_id:
            values["company_id"] = company_id
            changed = True
        for key, text in row.custom.items():
            if self.custom.get(key) != text:
                self.custom[key] = text
                changed = True
        for collection, items in ((self.tags, row.tags), (self.emails, row.emails)):
            for item in items:
                if item not in collection:
                    collection[item] = None
                    changed = True
        return changed


def _scalars(row: CustomerRow) -> tuple[Any, ...]:
    """The row's values of `_SCALARS`, in that order."""
    return (
        row.name,
        row.phone,
        row.birthday,
        row.timezone,
        row.language,
        row.lead_source,
        row.status,
    )


class CustomerWriter:
    """Merges each validated batch of customer rows into the database."""

    def __init__(self, report: ImportReport, default_owner_id: int | None) -> None:
        self.report = report
        self.default_owner_id = default_owner_id
        self.companies: dict[str, int] = {}  # casefolded name → id, for the whole import

    def __call__(self, session: Session, batch: Batch[CustomerRow]) -> None:
        connection = session.connection()
        owner_of = customers_by_address(connection, {address for row in batch.rows for address in row.emails})
        groups = self._groups(batch, owner_of)
        stored = self._load(connection, [g.customer_id for g in groups if g.customer_id])
        self._resolve_companies(connection, {row.company for g in groups for row in g.rows})
        addresses_of: dict[int, dict[str, None]] = {}
        for address, customer_id in owner_of.items():
            addresses_of.setdefault(customer_id, {})[address] = None
        created: list[_State] = []
        changed: list[tuple[int, _State, _State]] = []  # id, before, after
        for group in groups:
            if group.customer_id is None:
                created.append(self._merge_new(group))
            else:
                before = stored[group.customer_id]
                before.emails = addresses_of[group.customer_id]
                after = before.copy()
                if self._merge_existing(group, before, after):
                    changed.append((group.customer_id, before, after))
        now = utcnow()
        self._insert(connection, created, now)
        self._update(connection, changed, now)

    def _groups(self, batch: Batch[CustomerRow], owner_of: dict[str, int]) -> list[_Group]:
        """Union the batch's rows by shared addresses; refuse rows joining two customers."""
        by_address: dict[str, _Group] = {}
        by_customer: dict[int, _Group] = {}
        groups: list[_Group] = []
        for row in batch.rows:
            found: list[_Group] = []
            for address in row.emails:
                group = by_address.get(address)
                if group is not None:
                    group = group.root()
                else:
                    customer_id = owner_of.get(address)
                    if customer_id is None:
                        continue
                    group = by_customer.get(customer_id)
                    if group is None:
                        group = by_customer[customer_id] = _Group(customer_id)
                        groups.append(group)
                if group not in found:
                    found.append(group)
            if not found:
                target = _Group(None)
                groups.append(target)
            elif len(found) == 1:
                target = found[0]
            else:
                existing = [g for g in found if g.customer_id is not None]
                if len(existing) > 1:
                    batch.errors.append(RowError(row.line, _conflict(row, by_address, owner_of)))
                    continue
                target = existing[0] if existing else found[0]
                for group in found:
                    if group is not target:
                        group.parent = target
                        target.rows.extend(group.rows)
                        group.rows = []
            target.rows.append(row)
            for address in row.emails:
                by_address[address] = target
        result: list[_Group] = []
        for group in groups:
            if group.parent is not None or not group.rows:
                continue
            if len(group.rows) > 1:
                group.rows.sort()
            if group.customer_id is None and not any(r.name for r in group.rows):
                batch.errors.extend(
                    RowError(r.line, "name: missing (a new customer needs a name)") for r in group.rows
                )
                continue
            result.append(group)
        return result

    def _merge_new(self, group: _Group) -> _State:
        first, *later = group.rows
        state = _State.new(first, self._company_id(first))
        self.report.created += 1
        for row in later:
            if state.apply(row, self._company_id(row)):
                self.report.updated += 1
            else:
                self.report.unchanged += 1
        if state.values["status"] is None:
            state.values["status"] = CustomerStatus.LEAD.value
        if state.values["owner_id"] is None:
            state.values["owner_id"] = self.default_owner_id
        return state

    def _merge_existing(self, group: _Group, before: _State, after: _State) -> bool:
        """Overlay the rows on `after`; True when it now differs from what is stored."""
        flags = [after.apply(row, self._company_id(row)) for row in group.rows]
        if after == before:
            self.report.unchanged += len(flags)
            return False
        self.report.updated += sum(flags)
        self.report.unchanged += len(flags) - sum(flags)
        return True

    def _company_id(self, row: CustomerRow) -> int | None:
        return None if row.company is None else self.companies[row.company.casefold()]

    def _load(self, connection: Connection, ids: list[int]) -> dict[int, _State]:
        """The stored values and tags of the existing customers a batch touches."""
        states: dict[int, _State] = {}
        columns = ("id", "custom", *_COLUMNS)
        for row in rows_where_in(connection, CUSTOMER, columns, "id", ids):
            values = dict(zip(_COLUMNS, row[2:], strict=True))
            states[row[0]] = _State(values, dict(row[1] or {}), {}, {})
        for customer_id, tag in rows_where_in(connection, TAG, _TAG_COLUMNS, "customer_id", ids):
            states[customer_id].tags[tag] = None
        return states

    def _resolve_companies(self, connection: Connection, names: set[str | None]) -> None:
        """Company ids by name (case-insensitive), creating the missing ones in bulk."""
        missing = {
            name.casefold(): name
            for name in names
            if name is not None and name.casefold() not in self.companies
        }
        if not missing:
            return
        for chunk in chunks([name.lower() for name in missing.values()]):
            query = select(COMPANY.c.id, COMPANY.c.name).where(func.lower(COMPANY.c.name).in_(chunk))
            for company_id, name in connection.execute(query):
                self.companies.setdefault(name.casefold(), company_id)
        new = [name for key, name in missing.items() if key not in self.companies]
        if new:
            statement = insert(COMPANY).returning(COMPANY.c.id, COMPANY.c.name)
            params = [{"name": name, "created_at": utcnow()} for name in new]
            for company_id, name in connection.execute(statement, params):
                self.companies[name.casefold()] = company_id

    def _insert(self, connection: Connection, created: list[_State], now: datetime) -> None:
        if not created:
            return
        rows = [(*state.values.values(), state.custom) for state in created]
        ids = _insert_customers(connection, rows, now)
        addresses: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        for customer_id, state in zip(ids, created, strict=True):
            primary = True
            for address in state.emails:
                addresses.append((customer_id, address, primary))
                primary = False
            tags.extend((customer_id, tag) for tag in state.tags)
        insert_rows(connection, ADDRESS, _ADDRESS_COLUMNS, addresses, created_at=now)
        insert_rows(connection, TAG, _TAG_COLUMNS, tags)

    def _update(
        self, connection: Connection, changed: list[tuple[int, _State, _State]], now: datetime
    ) -> None:
        if not changed:
            return
        addresses: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        params: list[dict[str, Any]] = []
        for customer_id, before, after in changed:
            addresses.extend((customer_id, a, False) for a in after.emails if a not in before.emails)
            tags.extend((customer_id, t) for t in after.tags if t not in before.tags)
            row = {f"v_{name}": value for name, value in after.values.items()}
            params.append({**row, "v_id": customer_id, "v_custom": after.custom})
        statement = (
            update(CUSTOMER)
            .where(CUSTOMER.c.id == bindparam("v_id"))
            .values({name: bindparam(f"v_{name}") for name in (*_COLUMNS, "custom")} | {"updated_at": now})
        )
        connection.execute(statement, params)
        insert_rows(connection, ADDRESS, _ADDRESS_COLUMNS, addresses, created_at=now)
        insert_rows(connection, TAG, _TAG_COLUMNS, tags)


def _insert_customers(connection: Connection, rows: list[tuple[Any, ...]], now: datetime) -> Sequence[int]:
    """Insert customers (tuples of `_COLUMNS` values, then custom); their ids, in order."""
    if connection.dialect.name != "sqlite":
        statement = insert(CUSTOMER).returning(CUSTOMER.c.id, sort_by_parameter_order=True)
        params = [
            {**dict(zip(_CUSTOMER_COLUMNS[1:], row, strict=True)), "created_at": now, "updated_at": now}
            for row in rows
        ]
        return connection.execute(statement, params).scalars().all()
    # SQLAlchemy can keep RETURNING in parameter order on SQLite only by inserting row by
    # row. A write transaction holds SQLite's single write lock from BEGIN IMMEDIATE, so
    # the ids after the current maximum are ours to hand out, in one executemany.
    last = connection.execute(select(func.max(CUSTOMER.c.id))).scalar() or 0
    ids = range(last + 1, last + 1 + len(rows))
    numbered = [(customer_id, *row) for customer_id, row in zip(ids, rows, strict=True)]
    insert_rows(connection, CUSTOMER, _CUSTOMER_COLUMNS, numbered, created_at=now, updated_at=now)
    return ids


def _conflict(row: CustomerRow, by_address: dict[str, _Group], owner_of: dict[str, int]) -> str:
    owners: list[str] = []
    for address in row.emails:
        group = by_address.get(address)
        customer_id = group.root().customer_id if group is not None else owner_of.get(address)
        if customer_id is not None:
            owners.append(f"{address} is customer {customer_id}")
    return (
        f"addresses of different customers: {', '.join(owners)}; "
        "merge those customers first, or split the row"
    )
