"""Addresses never to send to again, whatever the rules plan.

An address is suppressed whether or not a customer owns it (a hard bounce or a
complaint about an address no customer has is kept too), so listing joins the
customer only where one owns the address.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import delete, func, insert, or_, select
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.errors import ValidationError
from mailcrm.store.outbox.tables import _ADDRESS, _CUSTOMER, _EVENT, _SUPPRESSION
from mailcrm.store.types import utcnow


def suppress(
    session: Session,
    address: str,
    reason: str,
    detail: str | None = None,
    *,
    customer_id: int | None = None,
    status: str | None = None,
    message_id: str | None = None,
    bounce_reason: str | None = None,
) -> bool:
    """Never send to `address` again; False when it already was suppressed.

    The row keeps why (`reason`: hard_bounce, soft_bounce, complained, unsubscribe, a
    person's words), the bounce reason and status behind it. With `customer_id` (a
    bounce at send time) the customer's timeline shows it, as it does for a bounce
    found in a mailbox.
    """
    normalized = normalize_address(address)
    exists = session.execute(select(_SUPPRESSION.c.id).where(_SUPPRESSION.c.address == normalized)).first()
    if exists:
        return False
    now = utcnow()
    session.execute(
        insert(_SUPPRESSION).values(
            address=normalized,
            reason=reason,
            detail=detail,
            bounce_reason=bounce_reason,
            status=status,
            created_at=now,
        )
    )
    if customer_id is not None:
        session.execute(
            insert(_EVENT).values(
                customer_id=customer_id,
                kind="bounced",
                at=now,
                message_pk=None,
                payload={
                    "summary": f"bounced: {normalized}: {bounce_reason or 'undefined'}"
                    + (f" ({status})" if status else "")
                    + "; address suppressed",
                    "address": normalized,
                    "status": status,
                    "reason": bounce_reason,
                    "suppressed": True,
                    "sender_side": False,
                    "diagnostic": detail,
                    "original_message_id": message_id,
                },
            )
        )
    return True


UNSUPPRESSED_EVENT = "unsuppressed"
MAX_NOTE_LENGTH = 2_000


def unsuppress(session: Session, address: str, *, note: str | None = None, author: str | None = None) -> bool:
    """Allow sending to `address` again; False when it was not suppressed.

    Where a customer owns the address, its timeline records it (an `unsuppressed`
    event with the earlier reason, who allowed it and why), so a later look at the
    customer explains why automated email started again.
    """
    normalized = normalize_address(address)
    text = (note or "").strip() or None
    if text is not None and len(text) > MAX_NOTE_LENGTH:
        raise ValidationError(f"the note is longer than {MAX_NOTE_LENGTH} characters")
    previous = session.execute(
        select(_SUPPRESSION.c.reason).where(_SUPPRESSION.c.address == normalized)
    ).scalar_one_or_none()
    if previous is None:
        return False
    session.execute(delete(_SUPPRESSION).where(_SUPPRESSION.c.address == normalized))
    owner = session.execute(
        select(_ADDRESS.c.customer_id).where(_ADDRESS.c.address == normalized)
    ).scalar_one_or_none()
    if owner is not None:
        summary = f"email to {normalized} allowed again (was {previous})" + (f": {text}" if text else "")
        session.execute(
            insert(_EVENT).values(
                customer_id=owner,
                kind=UNSUPPRESSED_EVENT,
                at=utcnow(),
                message_pk=None,
                payload={
                    "address": normalized,
                    "previous_reason": previous,
                    "note": text,
                    "by": author,
                    "summary": summary,
                },
            )
        )
    return True


class SuppressedAddress(BaseModel):
    """One suppressed address as `suppress list` shows it."""

    address: str
    reason: str
    detail: str | None
    suppressed_at: datetime
    customer_id: int | None
    customer_name: str | None


def list_suppressed(
    session: Session, *, reason: str | None = None, search: str | None = None, limit: int
) -> list[SuppressedAddress]:
    """Suppressed addresses, newest first, with their customer where one owns the address.

    `search` matches part of the address, the customer's name or the detail (e.g. the
    bounce's reply), case-insensitively.
    """
    query = (
        select(
            _SUPPRESSION.c.address,
            _SUPPRESSION.c.reason,
            _SUPPRESSION.c.detail,
            _SUPPRESSION.c.created_at,
            _CUSTOMER.c.id.label("customer_id"),
            _CUSTOMER.c.name.label("customer_name"),
        )
        .select_from(
            _SUPPRESSION.outerjoin(_ADDRESS, _ADDRESS.c.address == _SUPPRESSION.c.address).outerjoin(
                _CUSTOMER, _CUSTOMER.c.id == _ADDRESS.c.customer_id
            )
        )
        .order_by(_SUPPRESSION.c.created_at.desc(), _SUPPRESSION.c.id.desc())
        .limit(limit)
    )
    if reason is not None:
        query = query.where(_SUPPRESSION.c.reason == reason)
    if search:
        needle = search.strip().lower()  # % and _ are literal (autoescape), as in customer search
        query = query.where(
            or_(
                _SUPPRESSION.c.address.contains(needle, autoescape=True),
                func.lower(_CUSTOMER.c.name).contains(needle, autoescape=True),
                func.lower(_SUPPRESSION.c.detail).contains(needle, autoescape=True),
            )
        )
    return [
        SuppressedAddress(
            address=row.address,
            reason=row.reason,
            detail=row.detail,
            suppressed_at=row.created_at,
            customer_id=row.customer_id,
            customer_name=row.customer_name,
        )
        for row in session.execute(query)
    ]
