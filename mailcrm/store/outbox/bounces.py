"""Bounces a sync found, attached to the outbox rows they returned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from mailcrm.store.outbox.tables import _ATTEMPT, _OUTBOX, ATTEMPT_BOUNCED, _chunks
from mailcrm.store.types import utcnow


@dataclass(frozen=True, slots=True)
class FoundBounce:
    """A bounce a sync stored, as the outbox history tells it (`record_bounces`)."""

    reply: str  # e.g. '5.1.1 userunknown, suppressed: user unknown (reported by alice@team.example)'
    hard: bool  # the address was suppressed: the reply becomes the row's `last_error`
    code: int | None = None
    reason: str | None = None  # the bounce reason (`domain.bounce_reasons`), for reports


def record_bounces(
    session: Session, bounces: Mapping[str, FoundBounce], *, now: datetime | None = None
) -> list[int]:
    """Attach bounces a sync found to the outbox rows they returned (original Message-ID).

    The server took these messages, so the send-time history says `sent`; without this the
    row never shows that the recipient's server gave it back. Each row gets one `bounced`
    attempt with the bounce reason (a resync or a second copy of the report adds nothing),
    and a bounce that suppressed the address becomes the row's `last_error`; `state`
    stays as it is. Called by the sync in the
    transaction that stores the batch: one SELECT per chunk of Message-IDs, one INSERT,
    one UPDATE. Returns the row ids that got an attempt.
    """
    if not bounces:
        return []
    moment = now or utcnow()
    already = (
        select(_ATTEMPT.c.id)
        .where(_ATTEMPT.c.outbox_id == _OUTBOX.c.id, _ATTEMPT.c.outcome == ATTEMPT_BOUNCED)
        .exists()
    )
    rows: dict[int, FoundBounce] = {}
    for chunk in _chunks(sorted(bounces)):
        query = select(_OUTBOX.c.id, _OUTBOX.c.message_id).where(
            _OUTBOX.c.message_id.in_(list(chunk)), ~already
        )
        for row in session.execute(query):
            rows[int(row.id)] = bounces[row.message_id]
    if not rows:
        return []
    session.execute(
        insert(_ATTEMPT),
        [
            {
                "outbox_id": pk,
                "at": moment,
                "outcome": ATTEMPT_BOUNCED,
                "code": found.code,
                "reply": found.reply,
                "reason": found.reason,
            }
            for pk, found in sorted(rows.items())
        ],
    )
    hard = [{"pk": pk, "error": found.reply} for pk, found in sorted(rows.items()) if found.hard]
    if hard:
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == bindparam("pk"))
            .values(last_error=bindparam("error"), updated_at=moment),
            hard,
        )
    return sorted(rows)
