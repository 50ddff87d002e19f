"""The operator's view of the outbox: list, show, count, and the retry and cancel actions.

The reads take a `Session`; `retry` and `cancel` take the `Database` and commit their own
write transaction, in which they check the row's state and change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session

from mailcrm.errors import ConflictError, NotFoundError
from mailcrm.store.db import Database
from mailcrm.store.outbox.facts import primary_addresses
from mailcrm.store.outbox.tables import (
    _ATTEMPT,
    _OUTBOX,
    CANCELLED,
    CLAIMED,
    DUE,
    FAILED,
    SENT,
    SKIPPED,
    UNKNOWN,
    _changed,
)
from mailcrm.store.outbox.views import AttemptView, OutboxDetail, OutboxView
from mailcrm.store.types import utcnow


def _views(session: Session, rows: Sequence[Any], detail: bool) -> list[OutboxView]:
    emails = primary_addresses(session, [row.customer_id for row in rows])
    result: list[OutboxView] = []
    for row in rows:
        fields: dict[str, Any] = {
            name: getattr(row, name) for name in OutboxView.model_fields if name != "customer"
        }
        fields["customer"] = emails.get(row.customer_id)
        if detail:
            extra = {
                name: getattr(row, name)
                for name in OutboxDetail.model_fields
                if name not in fields and name != "history"
            }
            result.append(OutboxDetail(**fields, **extra))
        else:
            result.append(OutboxView(**fields))
    return result


def list_rows(
    session: Session,
    *,
    state: str | None = None,
    customer_id: int | None = None,
    rule: str | None = None,
    limit: int | None = 100,
) -> list[OutboxView]:
    """Rows matching the filters, latest due first."""
    query = select(_OUTBOX)
    if state is not None:
        query = query.where(_OUTBOX.c.state == state)
    if customer_id is not None:
        query = query.where(_OUTBOX.c.customer_id == customer_id)
    if rule is not None:
        query = query.where(_OUTBOX.c.rule == rule)
    query = query.order_by(_OUTBOX.c.due_at.desc(), _OUTBOX.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return _views(session, list(session.execute(query)), detail=False)


def get(session: Session, outbox_id: int) -> OutboxDetail:
    """One row with its bookkeeping; NotFoundError when there is none."""
    row = session.execute(select(_OUTBOX).where(_OUTBOX.c.id == outbox_id)).first()
    if row is None:
        raise NotFoundError(f"no outbox row with id {outbox_id}", hint="see `mailcrm outbox list`")
    view = _views(session, [row], detail=True)[0]
    assert isinstance(view, OutboxDetail)
    view.history = history(session, outbox_id)
    return view


def history(session: Session, outbox_id: int) -> list[AttemptView]:
    """Every delivery attempt of a row, oldest first."""
    query = (
        select(_ATTEMPT.c.at, _ATTEMPT.c.outcome, _ATTEMPT.c.code, _ATTEMPT.c.reply, _ATTEMPT.c.reason)
        .where(_ATTEMPT.c.outbox_id == outbox_id)
        .order_by(_ATTEMPT.c.at, _ATTEMPT.c.id)
    )
    return [
        AttemptView(at=a.at, outcome=a.outcome, code=a.code, reply=a.reply, reason=a.reason)
        for a in session.execute(query)
    ]


def count_by_state(session: Session) -> dict[str, int]:
    """Rows per state (status output)."""
    query = select(_OUTBOX.c.state, func.count()).group_by(_OUTBOX.c.state)
    return {state: int(count) for state, count in session.execute(query)}


def retry(db: Database, outbox_id: int, now: datetime | None = None) -> OutboxDetail:
    """Operator: queue a failed or delivery_unknown row again, due now, with a fresh deadline."""
    moment = now or utcnow()
    with db.write() as session:
        current = get(session, outbox_id)
        if current.state not in (FAILED, UNKNOWN):
            raise ConflictError(
                f"outbox row {outbox_id} is {current.state}; "
                "only failed or delivery_unknown rows can be retried"
            )
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == outbox_id, _OUTBOX.c.state == current.state)
            .values(
                state=DUE,
                due_at=moment,
                deadline_at=None,
                attempt_started_at=None,
                claimed_by=None,
                claimed_until=None,
                updated_at=moment,
            )
        )
        return get(session, outbox_id)


def cancel(db: Database, outbox_id: int, reason: str = "manual", now: datetime | None = None) -> OutboxDetail:
    """Operator: never send this row. Refused once it is sent, or while it is being sent."""
    moment = now or utcnow()
    with db.write() as session:
        current = get(session, outbox_id)
        if current.state in (SENT, SKIPPED, CANCELLED):
            raise ConflictError(f"outbox row {outbox_id} is already {current.state}")
        if current.state == CLAIMED and current.attempt_started_at is not None:
            raise ConflictError(
                f"outbox row {outbox_id} is being sent right now",
                hint="wait a moment and look again with `mailcrm outbox show`",
            )
        result = session.execute(
            update(_OUTBOX)
            .where(
                _OUTBOX.c.id == outbox_id,
                _OUTBOX.c.state == current.state,
                _OUTBOX.c.attempt_started_at.is_(None),
            )
            .values(
                state=CANCELLED,
                skip_reason=reason,
                claimed_by=None,
                claimed_until=None,
                updated_at=moment,
            )
        )
        if not _changed(result):
            raise ConflictError(f"outbox row {outbox_id} changed meanwhile; try again")
        return get(session, outbox_id)
