"""A customer's timeline: interactions, purchases and notes merged, newest first.

Purchases and notes live in their own tables; the timeline reads them together with
`timeline_event` rows instead of copying them, so there is one truth for each fact.

A purchase's `at` is its instant (for one given as a date only, the start of that day
in the customer's zone, which is where it sorts); its payload carries the customer's
local `date` and `has_time`, so a purchase dated 2021-11-02 shows as 2021-11-02 whatever
the customer's zone, not as the evening of Nov 1 in UTC.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from mailcrm.domain.values import from_minor_units
from mailcrm.store.models import Message, MessageLocation, Note, Purchase, TimelineEvent


class TimelineEntry(BaseModel):
    """One line of `mailcrm timeline --json`; the field names are a scripting interface."""

    kind: str
    at: datetime
    summary: str
    direction: str | None = None
    message_id: str | None = None
    subject: str | None = None
    flags: list[str] | None = None  # IMAP flags where the message is still on the server
    expunged: bool | None = None  # deleted from every synced folder (the entry stays)
    payload: dict[str, Any] = {}


def _locations(session: Session, message_pks: set[int]) -> dict[int, tuple[list[str], bool]]:
    """Per message: its flags (live locations) and whether every location is expunged."""
    found: dict[int, tuple[set[str], set[str], bool]] = {}
    if not message_pks:
        return {}
    query = select(MessageLocation.message_pk, MessageLocation.flags, MessageLocation.expunged_at).where(
        col(MessageLocation.message_pk).in_(sorted(message_pks))
    )
    for pk, flags, expunged_at in session.exec(query):
        live, gone, all_gone = found.get(pk, (set(), set(), True))
        (gone if expunged_at is not None else live).update((flags or "").split())
        found[pk] = (live, gone, all_gone and expunged_at is not None)
    return {
        pk: (sorted(gone if all_gone else live), all_gone) for pk, (live, gone, all_gone) in found.items()
    }


def _events(session: Session, customer_id: int, limit: int) -> Iterator[TimelineEntry]:
    query = (
        select(TimelineEvent, Message)
        .join(Message, col(TimelineEvent.message_pk) == col(Message.id), isouter=True)
        .where(TimelineEvent.customer_id == customer_id)
        .order_by(col(TimelineEvent.at).desc(), col(TimelineEvent.id).desc())
        .limit(limit)
    )
    rows = list(session.exec(query))
    places = _locations(session, {message.id for _, message in rows if message is not None and message.id})
    for event, message in rows:
        place = places.get(message.id) if message is not None and message.id is not None else None
        flags, expunged = place if place is not None else (None, None)
        payload = dict(event.payload or {})
        subject = message.subject if message else payload.get("subject")
        summary = str(payload.get("summary") or subject or event.kind)
        yield TimelineEntry(
            kind=event.kind,
            at=event.at,
            summary=summary,
            direction=message.direction if message else payload.get("direction"),
            message_id=message.message_id if message else payload.get("message_id"),
            subject=subject,
            flags=flags,
            expunged=expunged,
            payload=payload,
        )


def _purchases(session: Session, customer_id: int, limit: int) -> Iterator[TimelineEntry]:
    query = (
        select(Purchase)
        .where(Purchase.customer_id == customer_id)
        .order_by(col(Purchase.purchased_at).desc(), col(Purchase.id).desc())
        .limit(limit)
    )
    for row in session.exec(query):
        amount = from_minor_units(row.amount_minor, row.currency)
        yield TimelineEntry(
            kind="purchase",
            at=row.purchased_at,
            summary=f"bought {row.quantity} × {row.product} for {amount} {row.currency}",
            payload={
                "product": row.product,
                "quantity": row.quantity,
                "amount": str(amount),
                "currency": row.currency,
                "order_ref": row.order_ref,
                "date": row.purchased_on.isoformat(),
                "has_time": row.has_time,
            },
        )


def _notes(session: Session, customer_id: int, limit: int) -> Iterator[TimelineEntry]:
    query = (
        select(Note)
        .where(Note.customer_id == customer_id)
        .order_by(col(Note.created_at).desc(), col(Note.id).desc())
        .limit(limit)
    )
    for row in session.exec(query):
        yield TimelineEntry(
            kind="note",
            at=row.created_at,
            summary=row.text if len(row.text) <= 120 else row.text[:117] + "...",
            payload={"author": row.author, "text": row.text},
        )


def for_customer(session: Session, customer_id: int, limit: int = 100) -> list[TimelineEntry]:
    """The newest `limit` entries of all kinds, newest first."""
    sources: Iterable[Iterator[TimelineEntry]] = (
        _events(session, customer_id, limit),
        _purchases(session, customer_id, limit),
        _notes(session, customer_id, limit),
    )
    merged = heapq.merge(*sources, key=lambda entry: entry.at, reverse=True)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]
