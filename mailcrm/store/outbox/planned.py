"""Planned emails into the outbox, each with the Message-ID every later attempt will carry."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from mailcrm.domain.mime import make_message_id
from mailcrm.domain.planning import PlannedEmail
from mailcrm.store.outbox.tables import _CUSTOMER, _OUTBOX, _SALESPERSON, DUE, SKIPPED, _chunks
from mailcrm.store.types import utcnow

FALLBACK_ID_DOMAIN = "mailcrm.invalid"


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2] or None


def _owner_emails(connection: Connection, customer_ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(customer_ids)):
        query = (
            select(_CUSTOMER.c.id, _SALESPERSON.c.email)
            .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id)
            .where(_CUSTOMER.c.id.in_(chunk))
        )
        found.update({row.id: row.email for row in connection.execute(query)})
    return found


_PLANNED_COLUMNS = (
    "rule", "customer_id", "occurrence", "template", "sender", "due_at", "state", "attempts",
    "message_id", "in_reply_to", "skip_reason", "ambiguous_attempts", "created_at", "updated_at",
)  # fmt: skip
_PLANNED_PG_TYPES = (
    "text", "bigint", "text", "text", "text", "timestamp", "text", "integer",
    "text", "text", "text", "integer", "timestamp", "timestamp",
)  # fmt: skip


def planned_occurrences(session: Session, rule: str, customer_ids: set[int]) -> set[tuple[int, str]]:
    """(customer, occurrence) pairs of `rule` already in the outbox for these customers.

    Every planning pass plans the whole catch-up range again; one indexed query per batch
    keeps a pass that finds nothing new from building and shipping rows only to see them
    ignored. Driver SQL per dialect, as this runs once per batch of thousands.
    """
    if not customer_ids:
        return set()
    ids = sorted(customer_ids)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # A join, not `= ANY(array)`: PostgreSQL scans a parameter array linearly per row.
        query = (
            f"SELECT o.customer_id, o.occurrence FROM {_OUTBOX.name} AS o "
            "JOIN unnest(%b::bigint[]) AS wanted(id) ON o.customer_id = wanted.id WHERE o.rule = %s"
        )
        rows = connection.exec_driver_sql(query, (ids, rule))
    else:
        query = (
            f"SELECT customer_id, occurrence FROM {_OUTBOX.name} "
            "WHERE rule = ? AND customer_id IN (SELECT value FROM json_each(?))"
        )
        rows = connection.exec_driver_sql(query, (rule, json.dumps(ids)))
    return {(int(customer_id), str(occurrence)) for customer_id, occurrence in rows}


def insert_planned(
    session: Session,
    planned: Sequence[PlannedEmail],
    *,
    message_id_domain: str | None,
    owners: Mapping[int, str | None] | None = None,
) -> int:
    """Insert planned emails, ignoring those already in the outbox; returns how many are new.

    INSERT ... ON CONFLICT (rule, customer_id, occurrence) DO NOTHING, built for the
    planner's batches of thousands: SQLite runs one prepared statement through
    executemany; PostgreSQL one statement over arrays (`unnest`), as a multi-row VALUES
    statement with thousands of parameters costs more to build and parse client-side
    than the insert itself.

    Each new row gets its Message-ID now, so every later attempt (and any resend after a
    crash) carries the same one. Its domain: `message_id_domain`, else the sender's, else
    the customer's owner's (`owners`, customer id → owner email, looked up when not given).
    """
    if not planned:
        return 0
    connection = session.connection()
    if owners is None:
        owners = {}
        if message_id_domain is None:
            owners = _owner_emails(connection, {e.customer_id for e in planned if e.sender is None})
    dialect = connection.dialect
    processor = _OUTBOX.c.due_at.type.bind_processor(dialect)

    def stamp(value: datetime) -> Any:
        """A timestamp exactly as the column type stores it (naive UTC; ISO text on SQLite)."""
        return processor(value) if processor is not None else value

    now = stamp(utcnow())
    # Message-IDs: 128 random bits like `make_message_id`, whose base32 step is pure Python
    # and, at tens of thousands of rows, a tenth of a planning pass.
    checked: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    for email in planned:
        domain = (
            message_id_domain
            or _domain_of(email.sender or owners.get(email.customer_id))
            or FALLBACK_ID_DOMAIN
        )
        if domain not in checked:
            make_message_id(domain)  # its checks of the domain, once per domain
            checked.add(domain)
        skipped = email.state == SKIPPED
        rows.append(
            (
                email.rule,
                email.customer_id,
                email.occurrence,
                email.template,
                email.sender,
                stamp(email.due_at),
                SKIPPED if skipped else DUE,
                0,
                f"<{secrets.token_hex(16)}@{domain}>",
                email.in_reply_to,
                email.note if skipped else None,
                0,
                now,
                now,
            )
        )
    columns = ", ".join(_PLANNED_COLUMNS)
    conflict = "ON CONFLICT (rule, customer_id, occurrence) DO NOTHING"  # also a key twice in `planned`
    if dialect.name == "postgresql":
        arrays = ", ".join(f"%b::{kind}[]" for kind in _PLANNED_PG_TYPES)  # %b: binary, no text quoting
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) SELECT * FROM unnest({arrays}) {conflict}"
        result = connection.exec_driver_sql(
            statement, tuple(list(column) for column in zip(*rows, strict=True))
        )
    else:
        markers = ", ".join("?" * len(_PLANNED_COLUMNS))
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) VALUES ({markers}) {conflict}"
        result = connection.exec_driver_sql(statement, rows)
    return max(result.rowcount, 0)
