"""Addresses never to send to again, whatever the rules plan."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.store.outbox.tables import _EVENT, _SUPPRESSION, _changed
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
) -> bool:
    """Never send to `address` again; False when it already was suppressed.

    With `customer_id` (a hard bounce at send time) the customer's timeline shows it,
    as it does for a bounce found in a mailbox.
    """
    normalized = normalize_address(address)
    exists = session.execute(select(_SUPPRESSION.c.id).where(_SUPPRESSION.c.address == normalized)).first()
    if exists:
        return False
    now = utcnow()
    session.execute(
        insert(_SUPPRESSION).values(address=normalized, reason=reason, detail=detail, created_at=now)
    )
    if customer_id is not None:
        session.execute(
            insert(_EVENT).values(
                customer_id=customer_id,
                kind="bounced",
                at=now,
                message_pk=None,
                payload={
                    "address": normalized,
                    "status": status,
                    "diagnostic": detail,
                    "original_message_id": message_id,
                },
            )
        )
    return True


def unsuppress(session: Session, address: str) -> bool:
    """Allow sending to `address` again; False when it was not suppressed."""
    normalized = normalize_address(address)
    return _changed(session.execute(delete(_SUPPRESSION).where(_SUPPRESSION.c.address == normalized)))
