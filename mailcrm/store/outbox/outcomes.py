"""How a claim ends: sent, retried, deferred, failed, unknown or skipped, each kept in the history.

Each function takes the `Database` and commits its own transaction before it returns: the
row's new state, its history line and its timeline event stand or fall together, and the
sender (in a worker thread) holds no transaction open across an SMTP exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlmodel import Session

from mailcrm.store.db import Database
from mailcrm.store.outbox.recording import record
from mailcrm.store.outbox.tables import (
    _ATTEMPT,
    _EVENT,
    _OUTBOX,
    ATTEMPT_AMBIGUOUS,
    ATTEMPT_FAILED,
    ATTEMPT_RETRY,
    CANCELLED,
    CLAIMED,
    DUE,
    FAILED,
    SKIPPED,
    UNKNOWN,
    _changed,
)
from mailcrm.store.outbox.views import ClaimedEmail, SentRecord
from mailcrm.store.types import utcnow

_LATE_CHUNK = 2000  # rows `skip_late` settles per transaction
_LATE_ROUNDS = 1000

SEND_FAILED_EVENT = "send_failed"
"""Timeline kind telling the owner an automated email was given up on."""


def _mine(row: ClaimedEmail) -> Any:
    return and_(_OUTBOX.c.id == row.id, _OUTBOX.c.state == CLAIMED, _OUTBOX.c.claimed_by == row.claimed_by)


def _attempt(
    session: Session,
    outbox_id: int,
    outcome: str,
    at: datetime,
    code: int | None,
    reply: str | None,
    reason: str | None = None,
) -> None:
    session.execute(
        insert(_ATTEMPT).values(
            outbox_id=outbox_id, at=at, outcome=outcome, code=code, reply=reply, reason=reason
        )
    )


def mark_sending(db: Database, row: ClaimedEmail, now: datetime | None = None) -> bool:
    """Record that the final "." is about to be sent; False: the row is no longer ours (do not send)."""
    started, _ = record(db, starting=[row], now=now)
    return row.id in started


def mark_sent(
    db: Database,
    row: ClaimedEmail,
    *,
    sender: str,
    recipient: str,
    subject: str,
    snippet: str,
    thread_key: str | None = None,
    now: datetime | None = None,
    code: int | None = 250,
    reply: str | None = None,
) -> bool:
    """The server accepted the message: the row is sent, and the customer's timeline shows it.

    The message is stored under its Message-ID like synced mail, so the copy that
    sync later finds in the Sent folder is recognised, not added twice. Returns False
    when the row had already been marked sent (a duplicate delivery).
    """
    sent = SentRecord(
        row=row,
        sender=sender,
        recipient=recipient,
        subject=subject,
        snippet=snippet,
        thread_key=thread_key,
        at=now or utcnow(),
        code=code,
        reply=reply,
    )
    _, first = record(db, sent=[sent])
    return row.id in first


def mark_retry(
    db: Database,
    row: ClaimedEmail,
    error: str,
    next_at: datetime,
    *,
    deadline: datetime | None = None,
    attempted: bool = True,
    ambiguous: bool = False,
    now: datetime | None = None,
    code: int | None = None,
    reply: str | None = None,
    reason: str | None = None,
) -> bool:
    """Back to `due` at `next_at`. `attempted` False: nothing reached the server (not counted).

    An attempt goes into the row's history with the server's `code` and `reply`
    (default: `error`) and the bounce `reason` the reply names.
    """
    moment = now or utcnow()
    values: dict[str, Any] = {
        "state": DUE,
        "due_at": next_at,
        "last_error": error,
        "attempt_started_at": None,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": moment,
    }
    if deadline is not None:
        values["deadline_at"] = deadline
    if attempted:
        values["attempts"] = _OUTBOX.c.attempts + 1
    if ambiguous:
        values["ambiguous_attempts"] = _OUTBOX.c.ambiguous_attempts + 1
    with db.write() as session:
        changed = _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))
        if attempted:
            outcome = ATTEMPT_AMBIGUOUS if ambiguous else ATTEMPT_RETRY
            _attempt(session, row.id, outcome, moment, code, reply or error, reason)
        return changed


def defer(
    db: Database, row: ClaimedEmail, until: datetime, *, note: str | None = None, now: datetime | None = None
) -> bool:
    """Back to `due` at `until` without an attempt (daily cap reached, account paused).

    `note` (why) becomes `last_error` when given.
    """
    moment = now or utcnow()
    values: dict[str, Any] = {
        "state": DUE,
        "due_at": until,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": moment,
    }
    if note is not None:
        values["last_error"] = note
    with db.write() as session:
        unstarted = and_(_mine(row), _OUTBOX.c.attempt_started_at.is_(None))
        return _changed(session.execute(update(_OUTBOX).where(unstarted).values(**values)))


def _finish(
    db: Database,
    row: ClaimedEmail,
    values: dict[str, Any],
    attempt: tuple[str, int | None, str | None, str | None] | None = None,
    event: tuple[str, dict[str, Any]] | None = None,
) -> bool:
    """End the row's claim; `attempt` (outcome, code, reply, reason) goes into its history, and
    `event` (kind, payload) onto the customer's timeline if this call ended the claim."""
    moment = values.setdefault("updated_at", utcnow())
    values.update(attempt_started_at=None, claimed_by=None, claimed_until=None)
    with db.write() as session:
        changed = _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))
        if attempt is not None:
            _attempt(session, row.id, attempt[0], moment, attempt[1], attempt[2], attempt[3])
        if event is not None and changed:
            session.execute(
                insert(_EVENT).values(
                    customer_id=row.customer_id, kind=event[0], at=moment, message_pk=None, payload=event[1]
                )
            )
        return changed


def mark_failed(
    db: Database,
    row: ClaimedEmail,
    error: str,
    *,
    attempted: bool = True,
    now: datetime | None = None,
    outcome: str = ATTEMPT_FAILED,
    code: int | None = None,
    reply: str | None = None,
    notify: str | None = None,
    reason: str | None = None,
    sender_side: bool = False,
) -> bool:
    """Give up on the row; `error` (the server's reply or the template error) is kept.

    `attempted`: the server was asked, and the attempt (`outcome`: failed or
    suppressed, with `code`, `reply` and the bounce `reason`) goes into the row's
    history. `notify` (the salesperson to tell) puts a `send_failed` event on the
    customer's timeline, in the same transaction, so the owner learns of it exactly
    once; `sender_side` says there that the sender's own setup caused the failure.
    """
    values: dict[str, Any] = {"state": FAILED, "last_error": error, "updated_at": now or utcnow()}
    if attempted:
        values["attempts"] = _OUTBOX.c.attempts + 1
    event: tuple[str, dict[str, Any]] | None = None
    if notify is not None:
        cause = " (the sender's own setup caused it; the customer's address is fine)" if sender_side else ""
        payload = {
            "summary": f"automated email '{row.rule}' was not sent: {error}{cause}",
            "rule": row.rule,
            "template": row.template,
            "outbox_id": row.id,
            "reason": error,
            "bounce_reason": reason,
            "sender_side": sender_side,
            "salesperson": notify,
            "message_id": row.message_id,
        }
        event = (SEND_FAILED_EVENT, payload)
    attempt = (outcome, code, reply or error, reason) if attempted else None
    return _finish(db, row, values, attempt, event)


def mark_unknown(
    db: Database,
    row: ClaimedEmail,
    error: str,
    *,
    now: datetime | None = None,
    code: int | None = None,
    reply: str | None = None,
) -> bool:
    """The server may or may not have the message: hold the row for a person."""
    values: dict[str, Any] = {
        "state": UNKNOWN,
        "last_error": error,
        "attempts": _OUTBOX.c.attempts + 1,
        "ambiguous_attempts": _OUTBOX.c.ambiguous_attempts + 1,
        "updated_at": now or utcnow(),
    }
    return _finish(db, row, values, (ATTEMPT_AMBIGUOUS, code, reply or error, None))


def mark_skipped(
    db: Database, row: ClaimedEmail, reason: str, *, cancelled: bool = False, now: datetime | None = None
) -> bool:
    """Not sent on purpose (archived, suppressed, frequency cap; `cancelled`: the customer replied)."""
    values: dict[str, Any] = {
        "state": CANCELLED if cancelled else SKIPPED,
        "skip_reason": reason,
        "updated_at": now or utcnow(),
    }
    return _finish(db, row, values)


def skip_late(db: Database, before: datetime, reason: Callable[[datetime], str | None], now: datetime) -> int:
    """Skip due rows that were never attempted and are due before `before` (catch-up grace).

    `reason(due_at)` gives each row its skip reason (None: keep it). Set-based, in chunks,
    so a backlog left by a long outage costs a few statements rather than a transaction
    per row; on PostgreSQL rows another sender holds are left to it. Returns the count.
    """
    query = (
        select(_OUTBOX.c.id, _OUTBOX.c.due_at)
        .where(
            _OUTBOX.c.state == DUE,
            _OUTBOX.c.due_at < before,
            _OUTBOX.c.attempts == 0,
            _OUTBOX.c.ambiguous_attempts == 0,
            _OUTBOX.c.deadline_at.is_(None),
        )
        .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
        .limit(_LATE_CHUNK)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("pk"), _OUTBOX.c.state == DUE)
        .values(state=SKIPPED, skip_reason=bindparam("reason"), updated_at=now)
    )
    total = 0
    for _ in range(_LATE_ROUNDS):  # bounded: each round skips a chunk or ends the loop
        with db.write() as session:
            found = list(session.execute(query))
            values = [{"pk": r.id, "reason": why} for r in found if (why := reason(r.due_at)) is not None]
            if values:
                session.execute(statement, values)
        total += len(values)
        if len(found) < _LATE_CHUNK or not values:
            break
    return total
