"""Messages stored as malformed, for `mailboxes status`: where each is and why.

The parser (`domain.messages`) stores what it could read of a malformed message and
flags it (`message.is_malformed`); the list of its defects is not kept. What the stored
row still shows is reported: no readable Date, no usable From address, no usable
Message-ID (a hash of the headers stands in); anything else is a header or MIME part
that could not be read as the standards say.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailcrm.domain.messages import is_synthetic_message_id
from mailcrm.store.models import Message


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """One stored malformed message: its first location, identity and what is wrong."""

    mailbox: str | None
    folder: str | None
    uid: int | None
    message_id: str
    subject: str | None
    why: str


def why_malformed(row: Message) -> str:
    """What the stored row shows of why the parser flagged it."""
    reasons = []
    if row.sent_at is None:
        reasons.append("no readable Date")
    if row.from_address is None:
        reasons.append("no usable From address")
    if is_synthetic_message_id(row.message_id):
        reasons.append("no usable Message-ID")
    return "; ".join(reasons) or "a header or MIME part not as the standards say"


def malformed_messages(session: Session, limit: int = 200) -> list[MalformedMessage]:
    """The first `limit` malformed messages, by mailbox, folder and UID."""
    rows = session.exec(
        select(Message)
        .where(col(Message.is_malformed).is_(True))
        .order_by(col(Message.mailbox), col(Message.folder), col(Message.uid), col(Message.id))
        .limit(limit)
    ).all()
    return [
        MalformedMessage(row.mailbox, row.folder, row.uid, row.message_id, row.subject, why_malformed(row))
        for row in rows
    ]


def malformed_counts(session: Session) -> dict[tuple[str | None, str | None], int]:
    """How many malformed messages each (mailbox, folder) holds."""
    rows = session.exec(
        select(Message.mailbox, Message.folder, func.count())
        .where(col(Message.is_malformed).is_(True))
        .group_by(col(Message.mailbox), col(Message.folder))
    ).all()
    return {(mailbox, folder): int(count) for mailbox, folder, count in rows}
