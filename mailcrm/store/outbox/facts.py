"""What the sender reads just before it sends: template data, checks, daily caps and soft bounces.

`sent_since` and `soft_bounces` take the `Database`: the sender calls each from a worker
thread in a read transaction of its own, a fresh snapshot of what other senders committed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import Session

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.retry import is_soft_bounce, is_soft_failure
from mailcrm.store.customers import views_by_id as customer_views
from mailcrm.store.db import Database
from mailcrm.store.outbox.tables import (
    _ADDRESS,
    _ATTEMPT,
    _CUSTOMER,
    _EVENT,
    _MESSAGE,
    _OUTBOX,
    _PURCHASE,
    _REPORT,
    _SALESPERSON,
    _SUPPRESSION,
    CLAIMED,
    SENT,
    _chunks,
)
from mailcrm.store.outbox.views import ClaimedEmail, Prepared, SendCheck


def primary_addresses(session: Session, customer_ids: Iterable[int]) -> dict[int, str]:
    """Each customer's primary address (else its oldest one)."""
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(set(customer_ids))):
        query = (
            select(_ADDRESS.c.customer_id, _ADDRESS.c.address)
            .where(_ADDRESS.c.customer_id.in_(chunk))
            .order_by(_ADDRESS.c.customer_id, _ADDRESS.c.is_primary.desc(), _ADDRESS.c.id)
        )
        for row in session.execute(query):
            found.setdefault(row.customer_id, row.address)
    return found


_PURCHASE_FIELDS = (
    "product",
    "quantity",
    "amount_minor",
    "currency",
    "purchased_at",
    "purchased_on",
    "has_time",
    "order_ref",
)


def _purchases(session: Session, rows: Sequence[ClaimedEmail]) -> dict[int, dict[str, Any]]:
    """Per row: the purchase its `purchase:<id>` occurrence names, else the customer's latest."""
    columns = [_PURCHASE.c.id, _PURCHASE.c.customer_id, *(_PURCHASE.c[name] for name in _PURCHASE_FIELDS)]
    named: dict[int, int] = {}
    for row in rows:
        kind, _, ref = row.occurrence.partition(":")
        if kind == "purchase" and ref.isdigit():
            named[row.id] = int(ref)
    by_id: dict[int, Any] = {}
    for chunk in _chunks(sorted(set(named.values()))):
        by_id.update({p.id: p for p in session.execute(select(*columns).where(_PURCHASE.c.id.in_(chunk)))})
    latest: dict[int, Any] = {}
    customers = sorted(
        {
            row.customer_id
            for row in rows
            if (named_purchase := by_id.get(named.get(row.id, -1))) is None
            or named_purchase.customer_id != row.customer_id
        }
    )  # only rows whose occurrence names no purchase of theirs fall back to the latest
    for chunk in _chunks(customers):
        newest = (
            select(_PURCHASE.c.customer_id, func.max(_PURCHASE.c.purchased_at).label("at"))
            .where(_PURCHASE.c.customer_id.in_(chunk))
            .group_by(_PURCHASE.c.customer_id)
            .subquery()
        )
        query = (
            select(*columns)
            .join(
                newest,
                and_(
                    newest.c.customer_id == _PURCHASE.c.customer_id, newest.c.at == _PURCHASE.c.purchased_at
                ),
            )
            .order_by(_PURCHASE.c.id)
        )
        latest.update({p.customer_id: p for p in session.execute(query)})
    found: dict[int, dict[str, Any]] = {}
    for row in rows:
        purchase = by_id.get(named.get(row.id, -1))
        if purchase is None or purchase.customer_id != row.customer_id:
            purchase = latest.get(row.customer_id)
        if purchase is not None:
            found[row.id] = {name: getattr(purchase, name) for name in _PURCHASE_FIELDS}
    return found


def prepare(session: Session, rows: Sequence[ClaimedEmail]) -> dict[int, Prepared]:
    """The template data of a whole batch with a fixed number of queries."""
    views = customer_views(session, [row.customer_id for row in rows])
    purchases = _purchases(session, rows)
    parents: dict[str, Any] = {}
    wanted = sorted({row.in_reply_to for row in rows if row.in_reply_to})
    for chunk in _chunks(wanted):
        query = select(_MESSAGE.c.message_id, _MESSAGE.c.sent_at, _MESSAGE.c.thread_key, _MESSAGE.c.subject)
        parents.update(
            {p.message_id: p for p in session.execute(query.where(_MESSAGE.c.message_id.in_(chunk)))}
        )
    prepared: dict[int, Prepared] = {}
    for row in rows:
        view = views.get(row.customer_id)
        thread: str | None = None
        reply_since: datetime | None = None
        previous_subject: str | None = None
        if row.in_reply_to:
            parent = parents.get(row.in_reply_to)
            thread = (parent.thread_key if parent is not None else None) or row.in_reply_to
            reply_since = (parent.sent_at if parent is not None else None) or row.created_at
            previous_subject = parent.subject if parent is not None else None
        prepared[row.id] = Prepared(
            customer=view,
            recipient=view.email if view is not None else None,
            purchase=purchases.get(row.id),
            thread_key=thread,
            references=(thread,) if thread and thread != row.in_reply_to else (),
            previous_subject=previous_subject,
            reply_since=reply_since if row.is_followup else None,
        )
    return prepared


PURCHASES_ONLY = "purchases"
"""`customer.email_preference` of a customer who chose "fewer emails" on the unsubscribe
page: only emails about a purchase (a `purchase:<id>` occurrence: thank-yous) still go."""
FEWER_EMAILS = "fewer emails: the customer asked for emails about purchases only"


def send_checks(
    session: Session,
    rows: Sequence[ClaimedEmail],
    prepared: Mapping[int, Prepared],
    now: datetime,
    window: timedelta,
) -> dict[int, SendCheck]:
    """Status, suppression, reply and frequency of many rows, with a fixed number of queries.

    Read just before the rows are sent (the sender reads them again for a row whose
    answer is older than a second or two), so what changed since planning counts. A
    customer who chose fewer emails has every email not about a purchase refused as
    `suppressed` with `FEWER_EMAILS` as the reason.
    """
    customers = sorted({row.customer_id for row in rows})
    recipients = sorted({p.recipient for p in prepared.values() if p.recipient})
    followers = sorted({r.customer_id for r in rows if (p := prepared.get(r.id)) and p.reply_since})
    status: dict[int, str] = {}
    fewer: set[int] = set()  # customers who asked for emails about purchases only
    recent: dict[int, int] = {}
    for chunk in _chunks(customers):
        query = select(_CUSTOMER.c.id, _CUSTOMER.c.status, _CUSTOMER.c.email_preference).where(
            _CUSTOMER.c.id.in_(chunk)
        )
        for c in session.execute(query):
            status[c.id] = c.status
            if c.email_preference == PURCHASES_ONLY:
                fewer.add(c.id)
        sends = (
            select(_OUTBOX.c.customer_id, func.count().label("n"))
            .where(
                _OUTBOX.c.customer_id.in_(chunk),
                _OUTBOX.c.state == SENT,
                _OUTBOX.c.sent_at >= now - window,
            )
            .group_by(_OUTBOX.c.customer_id)
        )
        recent.update({s.customer_id: int(s.n) for s in session.execute(sends)})
    suppressed: dict[str, str] = {}
    for chunk in _chunks(recipients):
        query = select(_SUPPRESSION.c.address, _SUPPRESSION.c.reason).where(_SUPPRESSION.c.address.in_(chunk))
        suppressed.update({s.address: s.reason for s in session.execute(query)})
    last_reply: dict[int, datetime] = {}
    for chunk in _chunks(followers):
        query = (
            select(_EVENT.c.customer_id, func.max(_EVENT.c.at).label("at"))
            .where(_EVENT.c.customer_id.in_(chunk), _EVENT.c.kind == "reply")
            .group_by(_EVENT.c.customer_id)
        )
        last_reply.update({e.customer_id: e.at for e in session.execute(query)})
    checks: dict[int, SendCheck] = {}
    for row in rows:
        facts = prepared.get(row.id)
        since = facts.reply_since if facts else None
        replied_at = last_reply.get(row.customer_id)
        refused = suppressed.get(facts.recipient) if facts and facts.recipient else None
        if refused is None and row.customer_id in fewer and not row.occurrence.startswith("purchase:"):
            refused = FEWER_EMAILS
        checks[row.id] = SendCheck(
            status=status.get(row.customer_id),
            suppressed=refused,
            replied=since is not None and replied_at is not None and replied_at > since,
            recent_sends=recent.get(row.customer_id, 0),
        )
    return checks


def sent_since(
    db: Database, sender: str, since: datetime, *, exclude: Collection[int] = ()
) -> tuple[int, datetime | None]:
    """How many emails `sender` sent since `since` or has inside an SMTP transaction now
    (any process: claimed with `attempt_started_at` set), and the oldest sent (daily caps).

    Rows in `exclude` are left out of the count: the caller holds them in memory (its
    own reservations), so each row is counted once whatever state its write reached.
    """
    ids = list(exclude)
    counted = [_OUTBOX.c.id.not_in(ids)] if ids else []
    sent = and_(_OUTBOX.c.sender == sender, _OUTBOX.c.state == SENT, _OUTBOX.c.sent_at >= since)
    sent_count = select(func.count()).select_from(_OUTBOX).where(sent, *counted).scalar_subquery()
    oldest_sent = select(func.min(_OUTBOX.c.sent_at)).where(sent).scalar_subquery()
    # A claimed row carries no sender when it is the customer's owner's.
    effective = func.coalesce(_OUTBOX.c.sender, _SALESPERSON.c.email)
    started = (
        select(func.count())
        .select_from(_OUTBOX)
        .join(_CUSTOMER, _CUSTOMER.c.id == _OUTBOX.c.customer_id)
        .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id, isouter=True)
        .where(
            _OUTBOX.c.state == CLAIMED,
            _OUTBOX.c.attempt_started_at.is_not(None),
            effective == sender,
            *counted,
        )
        .scalar_subquery()
    )
    # One statement, so one snapshot: with two, a row committed from `claimed` to `sent`
    # between them (PostgreSQL reads each statement afresh) would be counted by neither.
    with db.read() as session:
        count, oldest, in_flight = session.execute(select(sent_count, oldest_sent, started)).one()
    return int(count) + int(in_flight), oldest


def soft_bounce_count(session: Session, customer_id: int, since: datetime) -> int:
    """The customer's soft bounces since `since`: SMTP replies while sending and failed
    deliveries that sync found in a mailbox, judged by the one rule
    (`domain.retry.is_soft_bounce` / `is_soft_failure`).

    Counted from the attempt history and the delivery reports, so it holds across rows,
    rules, mailboxes and restarts. A report sync attached to an outbox row is an attempt
    without a reply code, so it is counted once, as a report. The history keeps no
    recipient: all of the customer's attempts count, which is the primary address in all
    but the rare case of an address changed inside the window.
    """
    attempts = (
        select(_ATTEMPT.c.code, _ATTEMPT.c.reply)
        .join(_OUTBOX, _OUTBOX.c.id == _ATTEMPT.c.outbox_id)
        .where(_OUTBOX.c.customer_id == customer_id, _ATTEMPT.c.at >= since, _ATTEMPT.c.code >= 400)
    )
    count = sum(1 for code, reply in session.execute(attempts) if is_soft_bounce(code, reply))
    reports = select(_REPORT.c.reason, _REPORT.c.status).where(
        _REPORT.c.customer_id == customer_id, _REPORT.c.kind == "bounced", _REPORT.c.at >= since
    )
    for reason, status in session.execute(reports):
        known = reason in BounceReason.__members__.values()
        count += int(known and is_soft_failure(BounceReason(reason), status))
    return count


def soft_bounces(db: Database, customer_id: int, since: datetime) -> int:
    """`soft_bounce_count` in a read transaction of its own (the sender's)."""
    with db.read() as session:
        return soft_bounce_count(session, customer_id, since)
