"""Folder cursors: how far each mailbox folder is synced, plus its health for `mailboxes status`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from mailcrm.store.models import FolderCursor
from mailcrm.store.types import utcnow


def get(session: Session, mailbox: str, folder: str) -> FolderCursor:
    """The cursor row, created empty (nothing synced) when new."""
    row = session.exec(
        select(FolderCursor).where(FolderCursor.mailbox == mailbox, FolderCursor.folder == folder)
    ).first()
    if row is None:
        row = FolderCursor(mailbox=mailbox, folder=folder)
        session.add(row)
        session.flush()
    return row


def advance(
    session: Session,
    cursor: FolderCursor,
    *,
    uidvalidity: int,
    last_uid: int,
    highestmodseq: int | None,
    added: int,
    at: datetime | None = None,
) -> None:
    """Move the cursor; called in the transaction that stored the batch it covers."""
    cursor.uidvalidity = uidvalidity
    cursor.last_uid = max(cursor.last_uid if cursor.uidvalidity == uidvalidity else 0, last_uid)
    cursor.highestmodseq = highestmodseq
    cursor.messages += added
    cursor.last_sync_at = at or utcnow()
    cursor.last_error = None
    session.add(cursor)


def set_highestmodseq(session: Session, cursor: FolderCursor, modseq: int) -> None:
    """Store HIGHESTMODSEQ; called in the transaction that applied every change below it."""
    cursor.highestmodseq = modseq
    cursor.last_sync_at = utcnow()
    session.add(cursor)


def reset(session: Session, cursor: FolderCursor, uidvalidity: int) -> int | None:
    """A new UIDVALIDITY: every UID is void, start the folder again. Returns the old value."""
    old = cursor.uidvalidity
    cursor.uidvalidity = uidvalidity
    cursor.last_uid = 0
    cursor.highestmodseq = None
    session.add(cursor)
    return old


def record_error(session: Session, mailbox: str, folder: str, error: str) -> None:
    """Remember the last failure so `mailboxes status` can show it."""
    cursor = get(session, mailbox, folder)
    cursor.errors += 1
    cursor.last_error = error[:2000]
    session.add(cursor)


def clear_error(session: Session, mailbox: str, folder: str) -> None:
    """Forget the last failure (the error count stays); no row is created."""
    session.execute(
        update(FolderCursor)
        .where(
            col(FolderCursor.mailbox) == mailbox,
            col(FolderCursor.folder) == folder,
            col(FolderCursor.last_error).is_not(None),
        )
        .values(last_error=None)
    )


def all_cursors(session: Session) -> list[FolderCursor]:
    return list(
        session.exec(select(FolderCursor).order_by(col(FolderCursor.mailbox), col(FolderCursor.folder)))
    )
