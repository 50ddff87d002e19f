"""Claims are leases: which sender holds which row until when, and what becomes of rows left mid-send.

Each function takes the `Database` and commits its own transaction: a claim must be
visible to every other sender the moment the function returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlmodel import Session

from mailcrm.domain.retry import AmbiguousPolicy, Verdict, after_ambiguous
from mailcrm.store.db import Database
from mailcrm.store.outbox.confirm import confirm_stored
from mailcrm.store.outbox.tables import (
    _ATTEMPT,
    _CUSTOMER,
    _OUTBOX,
    _SALESPERSON,
    ATTEMPT_AMBIGUOUS,
    CLAIMED,
    DUE,
    UNKNOWN,
)
from mailcrm.store.outbox.views import ClaimedEmail

INTERRUPTED_RESEND = "sender stopped inside the SMTP transaction; sent again with the same Message-ID"
INTERRUPTED_HOLD = "sender stopped inside the SMTP transaction; delivery unknown"


def _claimed_rows(session: Session, ids: Sequence[int]) -> list[ClaimedEmail]:
    if not ids:
        return []
    query = (
        select(_OUTBOX, _SALESPERSON.c.email.label("owner_email"))
        .join(_CUSTOMER, _CUSTOMER.c.id == _OUTBOX.c.customer_id)
        .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id, isouter=True)
        .where(_OUTBOX.c.id.in_(list(ids)))
        .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
    )
    return [
        ClaimedEmail(
            id=row.id,
            rule=row.rule,
            customer_id=row.customer_id,
            occurrence=row.occurrence,
            template=row.template,
            sender=row.sender or row.owner_email,
            due_at=row.due_at,
            attempts=row.attempts,
            message_id=row.message_id,
            in_reply_to=row.in_reply_to,
            deadline_at=row.deadline_at,
            ambiguous_attempts=row.ambiguous_attempts,
            claimed_by=row.claimed_by,
            created_at=row.created_at,
        )
        for row in session.execute(query)
    ]


def _settle_interrupted(
    session: Session, rows: Sequence[Any], policy: AmbiguousPolicy, now: datetime, *, to_state: str
) -> list[int]:
    """Rows a sender left inside an SMTP transaction: resend once or hold; returns resent ids."""
    resend = [r.id for r in rows if after_ambiguous(policy, r.ambiguous_attempts) is Verdict.RETRY]
    hold = [r.id for r in rows if r.id not in set(resend)]
    if rows:
        session.execute(
            insert(_ATTEMPT),
            [
                {
                    "outbox_id": r.id,
                    "at": r.attempt_started_at or now,
                    "outcome": ATTEMPT_AMBIGUOUS,
                    "code": None,
                    "reply": INTERRUPTED_RESEND if r.id in resend else INTERRUPTED_HOLD,
                }
                for r in rows
            ],
        )
    if resend:
        values: dict[str, Any] = {
            "state": to_state,
            "attempt_started_at": None,
            "ambiguous_attempts": _OUTBOX.c.ambiguous_attempts + 1,
            "attempts": _OUTBOX.c.attempts + 1,
            "last_error": INTERRUPTED_RESEND,
            "updated_at": now,
        }
        if to_state == DUE:
            values.update(claimed_by=None, claimed_until=None)
        session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(resend)).values(**values))
    if hold:
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(hold))
            .values(
                state=UNKNOWN,
                attempt_started_at=None,
                ambiguous_attempts=_OUTBOX.c.ambiguous_attempts + 1,
                attempts=_OUTBOX.c.attempts + 1,
                last_error=INTERRUPTED_HOLD,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            )
        )
    return resend


def claim(
    db: Database,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    *,
    ambiguous: AmbiguousPolicy = "resend",
) -> list[ClaimedEmail]:
    """Take up to `limit` due rows (oldest first) for `lease`; expired leases are taken over.

    A taken-over row that was inside an SMTP transaction follows `ambiguous` (see the
    package docstring): resent once, or set aside as `delivery_unknown`.
    """
    with db.write() as session:
        # Due rows and expired claims in two queries, each walking the (state, due_at)
        # index in order: one query with OR sorts every due row to find the first ones.
        columns = (
            _OUTBOX.c.id,
            _OUTBOX.c.state,
            _OUTBOX.c.attempt_started_at,
            _OUTBOX.c.ambiguous_attempts,
            _OUTBOX.c.due_at,
        )
        found: list[Any] = []
        for wanted in (
            and_(_OUTBOX.c.state == DUE, _OUTBOX.c.due_at <= now),
            and_(_OUTBOX.c.state == CLAIMED, _OUTBOX.c.claimed_until < now),  # expired leases
        ):
            query = (
                select(*columns)
                .where(wanted)
                .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            found += session.execute(query)
        rows = sorted(found, key=lambda r: (r.due_at, r.id))[:limit]
        interrupted = [r for r in rows if r.state == CLAIMED and r.attempt_started_at is not None]
        resent = set(_settle_interrupted(session, interrupted, ambiguous, now, to_state=CLAIMED))
        confirm_stored(session, now=now)
        taken = [r.id for r in rows if r.attempt_started_at is None or r.id in resent]
        if taken:
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(taken))
                .values(state=CLAIMED, claimed_by=worker_id, claimed_until=now + lease, updated_at=now)
            )
    # Read after the commit: the rows are ours now, and the write lock (which the
    # sender's group commits wait for) is not held while a thousand rows are read.
    with db.read() as session:
        return _claimed_rows(session, taken)


def extend_lease(db: Database, worker_id: str, until: datetime) -> int:
    """Renew every claim this worker holds (its heartbeat)."""
    with db.write() as session:
        result = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.claimed_by == worker_id, _OUTBOX.c.state == CLAIMED)
            .values(claimed_until=until)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def release(db: Database, worker_id: str, now: datetime, *, ambiguous: AmbiguousPolicy = "resend") -> int:
    """Give back every claim of this worker (on stop): unstarted rows become due again.

    A row still inside an SMTP transaction (its sender gave up waiting for the reply)
    follows the `ambiguous` policy. Returns how many rows were released.
    """
    with db.write() as session:
        held = list(
            session.execute(
                select(_OUTBOX.c.id, _OUTBOX.c.attempt_started_at, _OUTBOX.c.ambiguous_attempts).where(
                    _OUTBOX.c.claimed_by == worker_id, _OUTBOX.c.state == CLAIMED
                )
            )
        )
        unstarted = [r.id for r in held if r.attempt_started_at is None]
        if unstarted:
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(unstarted))
                .values(state=DUE, claimed_by=None, claimed_until=None, updated_at=now)
            )
        _settle_interrupted(
            session, [r for r in held if r.attempt_started_at is not None], ambiguous, now, to_state=DUE
        )
        return len(held)
