"""The outbox: every SQL statement about planned emails, their claims and their outcomes.

Life of a row::

    due ──claim──> claimed ──mark_sending──> (in the SMTP transaction) ──mark_sent──> sent
     ^               │  │                          │
     │               │  └─ skipped / cancelled      ├─ mark_retry ──> due (later, backoff)
     │               │     (send-time checks)       ├─ mark_failed ─> failed
     └───release─────┘                              └─ unknown outcome ─> due once more, or
                                                       delivery_unknown (`sending.ambiguous`)

Claims are leases: `claim` sets `claimed_by` and `claimed_until`, the sender renews
them while it works (`extend_lease`), and a row whose lease ran out is claimable
again, so a crashed sender's rows are taken over. On PostgreSQL several senders
claim at once with `SELECT ... FOR UPDATE SKIP LOCKED`; on SQLite the claim is one
`BEGIN IMMEDIATE` transaction, and there is only one writer at a time anyway.

Crash policy. The Message-ID is fixed when the row is inserted. `mark_sending` is
committed just before the final "." of DATA is written: a sender that dies before
it leaves a row with `attempt_started_at` empty, which is simply sent again (the
server discards an unfinished transaction, so nothing is duplicated). A sender that
dies after it leaves a row whose delivery is unknown. With `sending.ambiguous:
resend` (the default) it is sent once more with the same Message-ID, so the
recipient's client can fold the copies; a second unknown outcome is held. With
`hold` it becomes `delivery_unknown` for a person to look at (`outbox retry` sends
it). A sender uses each connection for one transaction at a time and marks the row
sent before it starts the next, so a kill leaves at most one such row per open
connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.mime import make_message_id
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.retry import AmbiguousPolicy, Verdict, after_ambiguous
from mailcrm.errors import ConflictError, NotFoundError
from mailcrm.store.customers import CustomerView
from mailcrm.store.customers import views as customer_views
from mailcrm.store.db import Database
from mailcrm.store.models import (
    Customer,
    EmailAddress,
    Message,
    MessageLink,
    OutboxItem,
    OutboxState,
    Purchase,
    Salesperson,
    Suppression,
    TimelineEvent,
    table_of,
)
from mailcrm.store.types import UTCDateTime, utcnow

_OUTBOX = table_of(OutboxItem)
_CUSTOMER = table_of(Customer)
_ADDRESS = table_of(EmailAddress)
_SALESPERSON = table_of(Salesperson)
_SUPPRESSION = table_of(Suppression)
_EVENT = table_of(TimelineEvent)
_MESSAGE = table_of(Message)
_LINK = table_of(MessageLink)
_PURCHASE = table_of(Purchase)

_CHUNK = 500
FALLBACK_ID_DOMAIN = "mailcrm.invalid"

DUE = OutboxState.DUE.value
CLAIMED = OutboxState.CLAIMED.value
SENT = OutboxState.SENT.value
FAILED = OutboxState.FAILED.value
SKIPPED = OutboxState.SKIPPED.value
CANCELLED = OutboxState.CANCELLED.value
UNKNOWN = OutboxState.DELIVERY_UNKNOWN.value

INTERRUPTED_RESEND = "sender stopped inside the SMTP transaction; sent again with the same Message-ID"
INTERRUPTED_HOLD = "sender stopped inside the SMTP transaction; delivery unknown"


# --- values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedEmail:
    """A row this worker holds. `sender` is the effective one: the row's, else the owner's."""

    id: int
    rule: str
    customer_id: int
    occurrence: str
    template: str
    sender: str | None
    due_at: datetime
    attempts: int
    message_id: str
    in_reply_to: str | None
    deadline_at: datetime | None
    ambiguous_attempts: int
    claimed_by: str
    created_at: datetime

    @property
    def is_followup(self) -> bool:
        return self.occurrence.startswith("followup:")


class OutboxView(BaseModel):
    """One row as printed by `outbox list --json`; the field names are a scripting interface."""

    id: int
    rule: str
    customer_id: int
    customer: str | None
    occurrence: str
    template: str
    sender: str | None
    due_at: datetime
    state: str
    attempts: int
    last_error: str | None
    message_id: str
    sent_at: datetime | None


class OutboxDetail(OutboxView):
    """`outbox show --json`: the list fields plus the bookkeeping behind them."""

    in_reply_to: str | None
    skip_reason: str | None
    deadline_at: datetime | None
    claimed_by: str | None
    claimed_until: datetime | None
    attempt_started_at: datetime | None
    ambiguous_attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a row's email is made of, read once per batch (`prepare`)."""

    customer: CustomerView | None  # the `customers show --json` shape templates get
    recipient: str | None  # the primary address
    purchase: dict[str, Any] | None  # the purchase the email is about (else the latest one)
    thread_key: str | None  # the conversation a follow-up belongs to
    references: tuple[str, ...]  # its References besides In-Reply-To
    previous_subject: str | None  # subject of the email a follow-up follows
    reply_since: datetime | None  # a follow-up is moot after a reply later than this


@dataclass(frozen=True, slots=True)
class SendCheck:
    """What may have changed since planning, read again just before the send (`send_check`)."""

    status: str | None  # None: the customer is gone
    suppressed: str | None  # why the recipient is suppressed, if it is
    replied: bool  # the customer replied after the email a follow-up follows
    recent_sends: int  # automated emails sent to the customer inside the frequency window


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2] or None


# --- planning ---------------------------------------------------------------------------


def _owner_emails(session: Session, customer_ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(customer_ids)):
        query = (
            select(_CUSTOMER.c.id, _SALESPERSON.c.email)
            .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id)
            .where(_CUSTOMER.c.id.in_(chunk))
        )
        found.update({row.id: row.email for row in session.execute(query)})
    return found


def _insert_or_ignore(session: Session, table: Any, key: list[str]) -> Any:
    """INSERT ... ON CONFLICT (key) DO NOTHING for this session's dialect."""
    builder = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return builder(table).on_conflict_do_nothing(index_elements=key)


def insert_planned(
    session: Session, planned: Sequence[PlannedEmail], *, message_id_domain: str | None
) -> int:
    """Insert planned emails, ignoring those already in the outbox; returns how many are new.

    Each new row gets its Message-ID now, so every later attempt (and any resend after a
    crash) carries the same one. `message_id_domain` None: the sender's (or owner's) domain.
    """
    if not planned:
        return 0
    unique: dict[tuple[str, int, str], PlannedEmail] = {}
    for email in planned:
        unique.setdefault((email.rule, email.customer_id, email.occurrence), email)
    owners: dict[int, str] = {}
    if message_id_domain is None:
        owners = _owner_emails(session, {e.customer_id for e in unique.values() if e.sender is None})
    now = utcnow()
    values = []
    for email in unique.values():
        domain = (
            message_id_domain
            or _domain_of(email.sender or owners.get(email.customer_id))
            or FALLBACK_ID_DOMAIN
        )
        skipped = email.state == SKIPPED
        values.append(
            {
                "rule": email.rule,
                "customer_id": email.customer_id,
                "occurrence": email.occurrence,
                "template": email.template,
                "sender": email.sender,
                "due_at": email.due_at,
                "state": SKIPPED if skipped else DUE,
                "attempts": 0,
                "message_id": make_message_id(domain),
                "in_reply_to": email.in_reply_to,
                "skip_reason": email.note if skipped else None,
                "ambiguous_attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    statement = _insert_or_ignore(session, _OUTBOX, ["rule", "customer_id", "occurrence"]).returning(
        _OUTBOX.c.id
    )
    inserted = 0
    for chunk in _chunks(values):
        inserted += len(session.execute(statement, list(chunk)).all())
    return inserted


# --- claiming ---------------------------------------------------------------------------


def _claimed_rows(session: Session, ids: Sequence[int]) -> list[ClaimedEmail]:
    if not ids:
        return []
    query = (
        select(_OUTBOX, _SALESPERSON.c.email.label("owner_email"))
        .join(_CUSTOMER, _CUSTOMER.c.id == _OUTBOX.c.customer_id)
        .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id, isouter=True)
        .where(_OUTBOX.c.id.in_(list(ids)))
        .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
    )
    return [
        ClaimedEmail(
            id=row.id,
            rule=row.rule,
            customer_id=row.customer_id,
            occurrence=row.occurrence,
            template=row.template,
            sender=row.sender or row.owner_email,
            due_at=row.due_at,
            attempts=row.attempts,
            message_id=row.message_id,
            in_reply_to=row.in_reply_to,
            deadline_at=row.deadline_at,
            ambiguous_attempts=row.ambiguous_attempts,
            claimed_by=row.claimed_by,
            created_at=row.created_at,
        )
        for row in session.execute(query)
    ]


def _settle_interrupted(
    session: Session, rows: Sequence[Any], policy: AmbiguousPolicy, now: datetime, *, to_state: str
) -> list[int]:
    """Rows a sender left inside an SMTP transaction: resend once or hold; returns resent ids."""
    resend = [r.id for r in rows if after_ambiguous(policy, r.ambiguous_attempts) is Verdict.RETRY]
    hold = [r.id for r in rows if r.id not in set(resend)]
    if resend:
        values: dict[str, Any] = {
            "state": to_state,
            "attempt_started_at": None,
            "ambiguous_attempts": _OUTBOX.c.ambiguous_attempts + 1,
            "attempts": _OUTBOX.c.attempts + 1,
            "last_error": INTERRUPTED_RESEND,
            "updated_at": now,
        }
        if to_state == DUE:
            values.update(claimed_by=None, claimed_until=None)
        session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(resend)).values(**values))
    if hold:
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(hold))
            .values(
                state=UNKNOWN,
                attempt_started_at=None,
                ambiguous_attempts=_OUTBOX.c.ambiguous_attempts + 1,
                attempts=_OUTBOX.c.attempts + 1,
                last_error=INTERRUPTED_HOLD,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            )
        )
    return resend


def claim(
    db: Database,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    *,
    ambiguous: AmbiguousPolicy = "resend",
) -> list[ClaimedEmail]:
    """Take up to `limit` due rows (oldest first) for `lease`; expired leases are taken over.

    A taken-over row that was inside an SMTP transaction follows `ambiguous` (see the
    module docstring): resent once, or set aside as `delivery_unknown`.
    """
    with db.write() as session:
        expired = and_(_OUTBOX.c.state == CLAIMED, _OUTBOX.c.claimed_until < now)
        query = (
            select(_OUTBOX.c.id, _OUTBOX.c.state, _OUTBOX.c.attempt_started_at, _OUTBOX.c.ambiguous_attempts)
            .where(or_(and_(_OUTBOX.c.state == DUE, _OUTBOX.c.due_at <= now), expired))
            .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list(session.execute(query))
        interrupted = [r for r in rows if r.state == CLAIMED and r.attempt_started_at is not None]
        resent = set(_settle_interrupted(session, interrupted, ambiguous, now, to_state=CLAIMED))
        taken = [r.id for r in rows if r.attempt_started_at is None or r.id in resent]
        if taken:
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(taken))
                .values(state=CLAIMED, claimed_by=worker_id, claimed_until=now + lease, updated_at=now)
            )
        return _claimed_rows(session, taken)


def extend_lease(db: Database, worker_id: str, until: datetime) -> int:
    """Renew every claim this worker holds (its heartbeat)."""
    with db.write() as session:
        result = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.claimed_by == worker_id, _OUTBOX.c.state == CLAIMED)
            .values(claimed_until=until)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def release(db: Database, worker_id: str, now: datetime, *, ambiguous: AmbiguousPolicy = "resend") -> int:
    """Give back every claim of this worker (on stop): unstarted rows become due again.

    A row still inside an SMTP transaction (its sender gave up waiting for the reply)
    follows the `ambiguous` policy. Returns how many rows were released.
    """
    with db.write() as session:
        held = list(
            session.execute(
                select(_OUTBOX.c.id, _OUTBOX.c.attempt_started_at, _OUTBOX.c.ambiguous_attempts).where(
                    _OUTBOX.c.claimed_by == worker_id, _OUTBOX.c.state == CLAIMED
                )
            )
        )
        unstarted = [r.id for r in held if r.attempt_started_at is None]
        if unstarted:
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(unstarted))
                .values(state=DUE, claimed_by=None, claimed_until=None, updated_at=now)
            )
        _settle_interrupted(
            session, [r for r in held if r.attempt_started_at is not None], ambiguous, now, to_state=DUE
        )
        return len(held)


# --- outcomes ---------------------------------------------------------------------------


def _mine(row: ClaimedEmail) -> Any:
    return and_(_OUTBOX.c.id == row.id, _OUTBOX.c.state == CLAIMED, _OUTBOX.c.claimed_by == row.claimed_by)


def _changed(result: Any) -> bool:
    return bool(getattr(result, "rowcount", 0))


def mark_sending(db: Database, row: ClaimedEmail, now: datetime | None = None) -> bool:
    """Record that the final "." is about to be sent; False: the row is no longer ours (do not send)."""
    moment = now or utcnow()
    with db.write() as session:
        result = session.execute(
            update(_OUTBOX).where(_mine(row)).values(attempt_started_at=moment, updated_at=moment)
        )
        return _changed(result)


def mark_sent(
    db: Database,
    row: ClaimedEmail,
    *,
    sender: str,
    recipient: str,
    subject: str,
    snippet: str,
    thread_key: str | None = None,
    now: datetime | None = None,
) -> bool:
    """The server accepted the message: the row is sent, and the customer's timeline shows it.

    The message is stored under its Message-ID like synced mail, so the copy that
    sync later finds in the Sent folder is recognised, not added twice. Returns False
    when the row had already been marked sent (a duplicate delivery).
    """
    moment = now or utcnow()
    with db.write() as session:
        result = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == row.id, _OUTBOX.c.state != SENT)
            .values(
                state=SENT,
                sent_at=moment,
                sender=sender,
                attempts=_OUTBOX.c.attempts + 1,
                attempt_started_at=None,
                claimed_by=None,
                claimed_until=None,
                updated_at=moment,
            )
        )
        first = _changed(result)
        message = _MESSAGE
        message_pk = session.execute(
            _insert_or_ignore(session, message, ["message_id"])
            .values(
                message_id=row.message_id,
                thread_key=thread_key or row.message_id,
                direction="out",
                mailbox=sender,
                folder=None,
                from_address=sender,
                subject=subject,
                sent_at=moment,
                snippet=snippet,
                is_auto_reply=False,
                is_bounce=False,
                is_malformed=False,
                created_at=moment,
            )
            .returning(message.c.id)
        ).scalar_one_or_none()
        if message_pk is None:  # sync found it in the Sent folder first
            message_pk = session.execute(
                select(message.c.id).where(message.c.message_id == row.message_id)
            ).scalar_one()
        session.execute(
            _insert_or_ignore(session, _LINK, ["message_pk", "customer_id", "role"]).values(
                message_pk=message_pk, customer_id=row.customer_id, role="to"
            )
        )
        already = (
            select(_EVENT.c.id)
            .where(
                _EVENT.c.customer_id == row.customer_id,
                _EVENT.c.message_pk == message_pk,
                _EVENT.c.kind == "email_out",
            )
            .exists()
        )
        event = select(
            literal(row.customer_id),
            literal("email_out"),
            literal(moment, UTCDateTime()),
            literal(message_pk),
            literal({"rule": row.rule, "template": row.template, "outbox_id": row.id}, JSON()),
        ).where(~already)
        session.execute(
            insert(_EVENT).from_select(["customer_id", "kind", "at", "message_pk", "payload"], event)
        )
        return first


def mark_retry(
    db: Database,
    row: ClaimedEmail,
    error: str,
    next_at: datetime,
    *,
    deadline: datetime | None = None,
    attempted: bool = True,
    ambiguous: bool = False,
    now: datetime | None = None,
) -> bool:
    """Back to `due` at `next_at`. `attempted` False: nothing reached the server (not counted)."""
    moment = now or utcnow()
    values: dict[str, Any] = {
        "state": DUE,
        "due_at": next_at,
        "last_error": error,
        "attempt_started_at": None,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": moment,
    }
    if deadline is not None:
        values["deadline_at"] = deadline
    if attempted:
        values["attempts"] = _OUTBOX.c.attempts + 1
    if ambiguous:
        values["ambiguous_attempts"] = _OUTBOX.c.ambiguous_attempts + 1
    with db.write() as session:
        return _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))


def defer(
    db: Database, row: ClaimedEmail, until: datetime, *, note: str | None = None, now: datetime | None = None
) -> bool:
    """Back to `due` at `until` without an attempt (daily cap reached, account paused).

    `note` (why) becomes `last_error` when given.
    """
    moment = now or utcnow()
    values: dict[str, Any] = {
        "state": DUE,
        "due_at": until,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": moment,
    }
    if note is not None:
        values["last_error"] = note
    with db.write() as session:
        unstarted = and_(_mine(row), _OUTBOX.c.attempt_started_at.is_(None))
        return _changed(session.execute(update(_OUTBOX).where(unstarted).values(**values)))


def _finish(db: Database, row: ClaimedEmail, values: dict[str, Any]) -> bool:
    values.setdefault("updated_at", utcnow())
    values.update(attempt_started_at=None, claimed_by=None, claimed_until=None)
    with db.write() as session:
        return _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))


def mark_failed(
    db: Database, row: ClaimedEmail, error: str, *, attempted: bool = True, now: datetime | None = None
) -> bool:
    """Give up on the row; `error` (the server's reply or the template error) is kept."""
    values: dict[str, Any] = {"state": FAILED, "last_error": error, "updated_at": now or utcnow()}
    if attempted:
        values["attempts"] = _OUTBOX.c.attempts + 1
    return _finish(db, row, values)


def mark_unknown(db: Database, row: ClaimedEmail, error: str, *, now: datetime | None = None) -> bool:
    """The server may or may not have the message: hold the row for a person."""
    values: dict[str, Any] = {
        "state": UNKNOWN,
        "last_error": error,
        "attempts": _OUTBOX.c.attempts + 1,
        "ambiguous_attempts": _OUTBOX.c.ambiguous_attempts + 1,
        "updated_at": now or utcnow(),
    }
    return _finish(db, row, values)


def mark_skipped(
    db: Database, row: ClaimedEmail, reason: str, *, cancelled: bool = False, now: datetime | None = None
) -> bool:
    """Not sent on purpose (archived, suppressed, frequency cap; `cancelled`: the customer replied)."""
    values: dict[str, Any] = {
        "state": CANCELLED if cancelled else SKIPPED,
        "skip_reason": reason,
        "updated_at": now or utcnow(),
    }
    return _finish(db, row, values)


# --- send-time facts -------------------------------------------------------------------


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


_PURCHASE_FIELDS = ("product", "quantity", "amount_minor", "currency", "purchased_at", "order_ref")


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
    customers = sorted({row.customer_id for row in rows})
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
    customers = {
        c.id: c
        for chunk in _chunks(sorted({row.customer_id for row in rows}))
        for c in session.execute(select(Customer).where(_CUSTOMER.c.id.in_(chunk))).scalars()
    }
    views = {view.id: view for view in customer_views(session, list(customers.values()))}
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


def send_check(
    session: Session, row: ClaimedEmail, recipient: str | None, reply_since: datetime | None,
    now: datetime, window: timedelta,
) -> SendCheck:  # fmt: skip
    """Status, suppression, reply and frequency of one row, in one query, just before its send."""
    suppressed = select(_SUPPRESSION.c.reason).where(_SUPPRESSION.c.address == recipient).scalar_subquery()
    recent = (
        select(func.count())
        .select_from(_OUTBOX)
        .where(
            _OUTBOX.c.customer_id == row.customer_id,
            _OUTBOX.c.state == SENT,
            _OUTBOX.c.sent_at >= now - window,
            _OUTBOX.c.id != row.id,
        )
        .scalar_subquery()
    )
    columns: list[Any] = [_CUSTOMER.c.status, suppressed.label("suppressed"), recent.label("recent")]
    if reply_since is not None:
        replied = select(_EVENT.c.id).where(
            _EVENT.c.customer_id == row.customer_id, _EVENT.c.kind == "reply", _EVENT.c.at > reply_since
        )
        columns.append(replied.exists().label("replied"))
    found = session.execute(select(*columns).where(_CUSTOMER.c.id == row.customer_id)).first()
    if found is None:
        return SendCheck(status=None, suppressed=None, replied=False, recent_sends=0)
    return SendCheck(
        status=found.status,
        suppressed=found.suppressed,
        replied=bool(getattr(found, "replied", False)),
        recent_sends=int(found.recent),
    )


def sent_since(db: Database, sender: str, since: datetime) -> tuple[int, datetime | None]:
    """How many emails `sender` sent since `since`, and the oldest of them (daily caps)."""
    with db.read() as session:
        count, oldest = session.execute(
            select(func.count(), func.min(_OUTBOX.c.sent_at)).where(
                _OUTBOX.c.sender == sender, _OUTBOX.c.state == SENT, _OUTBOX.c.sent_at >= since
            )
        ).one()
    return int(count), oldest


# --- suppression ------------------------------------------------------------------------


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


# --- reading and operator actions --------------------------------------------------------


def _views(session: Session, rows: Sequence[Any], detail: bool) -> list[OutboxView]:
    emails = primary_addresses(session, [row.customer_id for row in rows])
    result: list[OutboxView] = []
    for row in rows:
        fields: dict[str, Any] = {
            name: getattr(row, name) for name in OutboxView.model_fields if name != "customer"
        }
        fields["customer"] = emails.get(row.customer_id)
        if detail:
            extra = {name: getattr(row, name) for name in OutboxDetail.model_fields if name not in fields}
            result.append(OutboxDetail(**fields, **extra))
        else:
            result.append(OutboxView(**fields))
    return result


def list_rows(
    session: Session,
    *,
    state: str | None = None,
    customer_id: int | None = None,
    rule: str | None = None,
    limit: int | None = 100,
) -> list[OutboxView]:
    """Rows matching the filters, latest due first."""
    query = select(_OUTBOX)
    if state is not None:
        query = query.where(_OUTBOX.c.state == state)
    if customer_id is not None:
        query = query.where(_OUTBOX.c.customer_id == customer_id)
    if rule is not None:
        query = query.where(_OUTBOX.c.rule == rule)
    query = query.order_by(_OUTBOX.c.due_at.desc(), _OUTBOX.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return _views(session, list(session.execute(query)), detail=False)


def get(session: Session, outbox_id: int) -> OutboxDetail:
    """One row with its bookkeeping; NotFoundError when there is none."""
    row = session.execute(select(_OUTBOX).where(_OUTBOX.c.id == outbox_id)).first()
    if row is None:
        raise NotFoundError(f"no outbox row with id {outbox_id}", hint="see `mailcrm outbox list`")
    view = _views(session, [row], detail=True)[0]
    assert isinstance(view, OutboxDetail)
    return view


def count_by_state(session: Session) -> dict[str, int]:
    """Rows per state (status output)."""
    query = select(_OUTBOX.c.state, func.count()).group_by(_OUTBOX.c.state)
    return {state: int(count) for state, count in session.execute(query)}


def retry(db: Database, outbox_id: int, now: datetime | None = None) -> OutboxDetail:
    """Operator: queue a failed or delivery_unknown row again, due now, with a fresh deadline."""
    moment = now or utcnow()
    with db.write() as session:
        current = get(session, outbox_id)
        if current.state not in (FAILED, UNKNOWN):
            raise ConflictError(
                f"outbox row {outbox_id} is {current.state}; "
                "only failed or delivery_unknown rows can be retried"
            )
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == outbox_id, _OUTBOX.c.state == current.state)
            .values(
                state=DUE,
                due_at=moment,
                deadline_at=None,
                attempt_started_at=None,
                claimed_by=None,
                claimed_until=None,
                updated_at=moment,
            )
        )
        return get(session, outbox_id)


def cancel(db: Database, outbox_id: int, reason: str = "manual", now: datetime | None = None) -> OutboxDetail:
    """Operator: never send this row. Refused once it is sent, or while it is being sent."""
    moment = now or utcnow()
    with db.write() as session:
        current = get(session, outbox_id)
        if current.state in (SENT, SKIPPED, CANCELLED):
            raise ConflictError(f"outbox row {outbox_id} is already {current.state}")
        if current.state == CLAIMED and current.attempt_started_at is not None:
            raise ConflictError(
                f"outbox row {outbox_id} is being sent right now",
                hint="wait a moment and look again with `mailcrm outbox show`",
            )
        result = session.execute(
            update(_OUTBOX)
            .where(
                _OUTBOX.c.id == outbox_id,
                _OUTBOX.c.state == current.state,
                _OUTBOX.c.attempt_started_at.is_(None),
            )
            .values(
                state=CANCELLED,
                skip_reason=reason,
                claimed_by=None,
                claimed_until=None,
                updated_at=moment,
            )
        )
        if not _changed(result):
            raise ConflictError(f"outbox row {outbox_id} changed meanwhile; try again")
        return get(session, outbox_id)
