"""Notes salespeople leave on customers."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailcrm.domain.values import check_text
from mailcrm.errors import ValidationError
from mailcrm.store.models import Note

MAX_NOTE_LENGTH = 20_000


def add(session: Session, customer_id: int, author: str, text: str, *, at: datetime | None = None) -> Note:
    """Store a note; empty or oversized text is refused, and so is a control character
    (NUL, ESC, ...) in the text or the author, as in customer fields: PostgreSQL cannot
    store NUL where SQLite can, and both stores must keep the same notes. `at`: when it was
    written, if not now (a note carried over from elsewhere, such as the demo's history)."""
    for field, value in (("note", text), ("author", author)):
        try:
            check_text(value)
        except ValidationError as exc:
            raise ValidationError(f"{field}: {exc.message}", hint=exc.hint) from None
    body = text.strip()
    if not body:
        raise ValidationError("the note is empty")
    if len(body) > MAX_NOTE_LENGTH:
        raise ValidationError(f"the note is longer than {MAX_NOTE_LENGTH} characters")
    note = Note(customer_id=customer_id, author=author.strip() or "unknown", text=body)
    if at is not None:
        note.created_at = at
    session.add(note)
    session.flush()
    return note
