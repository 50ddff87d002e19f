"""Rows of unknown delivery that a copy found in a mailbox shows were sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlmodel import Session

from mailcrm.store.outbox.tables import _ATTEMPT, _MESSAGE, _OUTBOX, ATTEMPT_CONFIRMED, SENT, UNKNOWN, _chunks
from mailcrm.store.types import utcnow


def confirm_from_mailbox(
    session: Session, message_ids: Iterable[str], *, mailbox: str, folder: str, now: datetime | None = None
) -> list[int]:
    """Rows in `delivery_unknown` whose Message-ID a sync just found in a mailbox folder
    (the copy the provider filed in Sent) are `sent`: the server did take the message.

    Called by the sync in the transaction that stores the batch; one UPDATE per chunk of
    Message-IDs. `sent_at` is the time the outcome became unknown (the attempt), and an
    attempt with outcome `confirmed` names the folder. Returns the confirmed row ids.
    """
    moment = now or utcnow()
    confirmed: list[int] = []
    for chunk in _chunks(sorted(set(message_ids))):
        result = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.state == UNKNOWN, _OUTBOX.c.message_id.in_(list(chunk)))
            .values(state=SENT, sent_at=_OUTBOX.c.updated_at, updated_at=moment)
            .returning(_OUTBOX.c.id)
        )
        ids = sorted(int(pk) for pk in result.scalars())
        if ids:
            _record_confirmed(session, dict.fromkeys(ids, f"found in {folder} of {mailbox}"), moment)
            confirmed.extend(ids)
    return confirmed


def _record_confirmed(session: Session, replies: Mapping[int, str], moment: datetime) -> None:
    """One `confirmed` attempt per row (row id -> where its copy was found)."""
    session.execute(
        insert(_ATTEMPT),
        [
            {"outbox_id": pk, "at": moment, "outcome": ATTEMPT_CONFIRMED, "code": None, "reply": reply}
            for pk, reply in sorted(replies.items())
        ],
    )


def confirm_stored(session: Session, *, now: datetime | None = None) -> list[int]:
    """Rows in `delivery_unknown` whose Message-ID is already in `message` are `sent`.

    `confirm_from_mailbox` only sees the messages a sync is storing: a Sent copy stored
    before the row's outcome became unknown (its sender died and a later claim set it
    aside) would otherwise never confirm it. `claim` runs this in its transaction, right
    after settling such rows; one UPDATE, which the (state, due_at) index keeps cheap.
    Returns the confirmed row ids.
    """
    moment = now or utcnow()
    stored = select(_MESSAGE.c.id).where(_MESSAGE.c.message_id == _OUTBOX.c.message_id).exists()
    result = session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.state == UNKNOWN, stored)
        .values(state=SENT, sent_at=_OUTBOX.c.updated_at, updated_at=moment)
        .returning(_OUTBOX.c.id, _OUTBOX.c.message_id)
    )
    rows = {row.message_id: int(row.id) for row in result}
    if not rows:
        return []
    replies = dict.fromkeys(rows.values(), "found in a stored message")
    for chunk in _chunks(sorted(rows)):
        query = select(_MESSAGE.c.message_id, _MESSAGE.c.mailbox, _MESSAGE.c.folder)
        for found in session.execute(query.where(_MESSAGE.c.message_id.in_(list(chunk)))):
            if found.folder and found.mailbox:
                replies[rows[found.message_id]] = f"found in {found.folder} of {found.mailbox}"
    _record_confirmed(session, replies, moment)
    return sorted(replies)
