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


def unsuppress(session: Session, address: str) -> bool:
    """Allow sending to `address` again; False when it was not suppressed."""
    normalized = normalize_address(address)
    return _changed(session.execute(delete(_SUPPRESSION).where(_SUPPRESSION.c.address == normalized)))
