"""What the web unsubscribe link reads and writes: the email a link names, and the choice.

`link_target` answers "which email, whose, in which language, and what did they choose
already" in one query plus one for the addresses. `unsubscribe` suppresses the
customer's addresses with the reason the mailto request uses (`unsubscribe`) and puts
one `unsubscribed` event on the timeline, like a request found by sync; `prefer_fewer`
records the "fewer emails" choice (`customer.email_preference`, which the sender's
send-time checks honour) with a `preference` event. Both write only what is new, so a
replayed request changes nothing and adds no second event.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailcrm.domain.delivery_reports import UNSUBSCRIBE
from mailcrm.store.models import (
    Customer,
    EmailAddress,
    Message,
    OutboxItem,
    Salesperson,
    Suppression,
    TimelineEvent,
    table_of,
)
from mailcrm.store.outbox.facts import PURCHASES_ONLY
from mailcrm.store.types import utcnow

_OUTBOX = table_of(OutboxItem)
_CUSTOMER = table_of(Customer)
_ADDRESS = table_of(EmailAddress)
_SALESPERSON = table_of(Salesperson)
_SUPPRESSION = table_of(Suppression)
_EVENT = table_of(TimelineEvent)
_MESSAGE = table_of(Message)

PREFERENCE_EVENT = "preference"


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """The email a link names and the customer it was sent to, as the page needs them."""

    outbox_id: int
    customer_id: int
    message_id: str
    language: str | None  # the customer's, else the owner's
    addresses: tuple[str, ...]  # primary first
    suppressed: frozenset[str]  # those of `addresses` already suppressed
    fewer: bool  # the customer asked for emails about purchases only

    @property
    def unsubscribed(self) -> bool:
        """Every address of the customer is suppressed: nothing automated goes out."""
        return bool(self.addresses) and self.suppressed >= set(self.addresses)


def link_target(session: Session, outbox_id: int) -> LinkTarget | None:
    """The email of outbox row `outbox_id`; None when the row or its customer is gone."""
    row = session.execute(
        select(
            _OUTBOX.c.customer_id,
            _OUTBOX.c.message_id,
            func.coalesce(_CUSTOMER.c.language, _SALESPERSON.c.language).label("language"),
            _CUSTOMER.c.email_preference,
        )
        .join(_CUSTOMER, _CUSTOMER.c.id == _OUTBOX.c.customer_id)
        .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id, isouter=True)
        .where(_OUTBOX.c.id == outbox_id)
    ).one_or_none()
    if row is None:
        return None
    addresses = session.execute(
        select(_ADDRESS.c.address, _SUPPRESSION.c.id.is_not(None).label("suppressed"))
        .join(_SUPPRESSION, _SUPPRESSION.c.address == _ADDRESS.c.address, isouter=True)
        .where(_ADDRESS.c.customer_id == row.customer_id)
        .order_by(_ADDRESS.c.is_primary.desc(), _ADDRESS.c.id)
    ).all()
    return LinkTarget(
        outbox_id=outbox_id,
        customer_id=row.customer_id,
        message_id=row.message_id,
        language=row.language,
        addresses=tuple(a.address for a in addresses),
        suppressed=frozenset(a.address for a in addresses if a.suppressed),
        fewer=row.email_preference == PURCHASES_ONLY,
    )


def _message_pk(session: Session, message_id: str) -> int | None:
    """The stored copy of the email the link came in (once sync or the sender stored it)."""
    found = session.execute(select(_MESSAGE.c.id).where(_MESSAGE.c.message_id == message_id)).first()
    return None if found is None else int(found.id)


def unsubscribe(session: Session, target: LinkTarget) -> list[str]:
    """Suppress every address of the customer not suppressed yet; returns those.

    The person asked through a link in one email, but wants no automated email at all,
    whichever of their addresses is primary later. One `unsubscribed` event when
    anything was new; a replay writes nothing.
    """
    now = utcnow()
    detail = f"asked through the unsubscribe link of {target.message_id}"
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    new = []
    for address in target.addresses:  # one at a time: a request racing this one may win some
        values = {"address": address, "reason": UNSUBSCRIBE, "detail": detail, "created_at": now}
        statement = module.insert(_SUPPRESSION).values(**values).on_conflict_do_nothing()
        if session.execute(statement.returning(_SUPPRESSION.c.id)).first() is not None:
            new.append(address)
    if not new:
        return []
    session.execute(
        insert(_EVENT).values(
            customer_id=target.customer_id,
            kind="unsubscribed",
            at=now,
            message_pk=_message_pk(session, target.message_id),
            payload={
                "summary": f"unsubscribed: {', '.join(new)} asked through the unsubscribe link "
                "to receive no more automated email",
                "address": new[0],
                "addresses": new,
                "suppressed": True,
                "via": "web",
                "original_message_id": target.message_id,
            },
        )
    )
    return new


def prefer_fewer(session: Session, target: LinkTarget) -> bool:
    """Only emails about a purchase from now on; False when that was already the choice."""
    changed = session.execute(
        update(_CUSTOMER)
        .where(
            _CUSTOMER.c.id == target.customer_id,
            _CUSTOMER.c.email_preference.is_distinct_from(PURCHASES_ONLY),
        )
        .values(email_preference=PURCHASES_ONLY)
    )
    if not int(getattr(changed, "rowcount", 0) or 0):
        return False
    session.execute(
        insert(_EVENT).values(
            customer_id=target.customer_id,
            kind=PREFERENCE_EVENT,
            at=utcnow(),
            message_pk=_message_pk(session, target.message_id),
            payload={
                "summary": "fewer emails: asked through the unsubscribe link for emails about purchases only",
                "preference": PURCHASES_ONLY,
                "via": "web",
                "original_message_id": target.message_id,
            },
        )
    )
    return True
