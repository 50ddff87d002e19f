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
it). A sender uses each connection for one transaction at a time, and a row's `sent`
is committed in the same transaction as the connection's next start or an earlier
one (`record`, the sender's group commit), so a kill leaves at most one such row per
open connection.

Every attempt that reached the server is kept in `outbox_attempt` (outcome, reply
code and text), which `outbox show` lists.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import DateTime, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.mime import make_message_id
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.retry import AmbiguousPolicy, Verdict, after_ambiguous
from mailcrm.errors import ConflictError, DatabaseError, NotFoundError
from mailcrm.store.customers import CustomerView
from mailcrm.store.customers import views_by_id as customer_views
from mailcrm.store.db import Database
from mailcrm.store.models import (
    Customer,
    EmailAddress,
    Message,
    MessageLink,
    OutboxAttempt,
    OutboxItem,
    OutboxState,
    Purchase,
    Salesperson,
    Suppression,
    TimelineEvent,
    table_of,
)
from mailcrm.store.types import utcnow

_OUTBOX = table_of(OutboxItem)
_CUSTOMER = table_of(Customer)
_ADDRESS = table_of(EmailAddress)
_SALESPERSON = table_of(Salesperson)
_SUPPRESSION = table_of(Suppression)
_EVENT = table_of(TimelineEvent)
_MESSAGE = table_of(Message)
_LINK = table_of(MessageLink)
_PURCHASE = table_of(Purchase)
_ATTEMPT = table_of(OutboxAttempt)

_CHUNK = 500
_LATE_CHUNK = 2000  # rows `skip_late` settles per transaction
_LATE_ROUNDS = 1000
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


class AttemptView(BaseModel):
    """One delivery attempt in `outbox show`: when, how it ended, and the server's reply."""

    at: datetime
    outcome: str  # sent, retry, failed, suppressed, ambiguous
    code: int | None
    reply: str | None


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
    history: list[AttemptView] = Field(default_factory=list)  # oldest first


@dataclass(frozen=True, slots=True)
class SentRecord:
    """A message the server accepted: what `record` writes for it."""

    row: ClaimedEmail
    sender: str
    recipient: str
    subject: str
    snippet: str
    thread_key: str | None
    at: datetime
    code: int | None = 250
    reply: str | None = None


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
    """What may have changed since planning, read again just before the send (`send_checks`)."""

    status: str | None  # None: the customer is gone
    suppressed: str | None  # why the recipient is suppressed, if it is
    replied: bool  # the customer replied after the email a follow-up follows
    recent_sends: int  # automated emails sent to the customer inside the frequency window


# Outcomes in the attempt history (`outbox_attempt.outcome`).
ATTEMPT_SENT = "sent"
ATTEMPT_RETRY = "retry"
ATTEMPT_FAILED = "failed"
ATTEMPT_SUPPRESSED = "suppressed"
ATTEMPT_AMBIGUOUS = "ambiguous"

SEND_FAILED_EVENT = "send_failed"
"""Timeline kind telling the owner an automated email was given up on."""


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2] or None


# --- planning ---------------------------------------------------------------------------


def _owner_emails(connection: Connection, customer_ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(customer_ids)):
        query = (
            select(_CUSTOMER.c.id, _SALESPERSON.c.email)
            .join(_SALESPERSON, _SALESPERSON.c.id == _CUSTOMER.c.owner_id)
            .where(_CUSTOMER.c.id.in_(chunk))
        )
        found.update({row.id: row.email for row in connection.execute(query)})
    return found


_PLANNED_COLUMNS = (
    "rule", "customer_id", "occurrence", "template", "sender", "due_at", "state", "attempts",
    "message_id", "in_reply_to", "skip_reason", "ambiguous_attempts", "created_at", "updated_at",
)  # fmt: skip
_PLANNED_PG_TYPES = (
    "text", "bigint", "text", "text", "text", "timestamp", "text", "integer",
    "text", "text", "text", "integer", "timestamp", "timestamp",
)  # fmt: skip


def insert_planned(
    target: Session | Connection,
    planned: Sequence[PlannedEmail],
    *,
    message_id_domain: str | None,
    owners: Mapping[int, str | None] | None = None,
) -> int:
    """Insert planned emails, ignoring those already in the outbox; returns how many are new.

    INSERT ... ON CONFLICT (rule, customer_id, occurrence) DO NOTHING, built for the
    planner's batches of thousands: SQLite runs one prepared statement through
    executemany; PostgreSQL one statement over arrays (`unnest`), as a multi-row VALUES
    statement with thousands of parameters costs more to build and parse client-side
    than the insert itself.

    Each new row gets its Message-ID now, so every later attempt (and any resend after a
    crash) carries the same one. Its domain: `message_id_domain`, else the sender's, else
    the customer's owner's (`owners`, customer id → owner email, looked up when not given).
    """
    if not planned:
        return 0
    connection = target.connection() if isinstance(target, Session) else target
    if owners is None:
        owners = {}
        if message_id_domain is None:
            owners = _owner_emails(connection, {e.customer_id for e in planned if e.sender is None})
    dialect = connection.dialect
    processor = _OUTBOX.c.due_at.type.bind_processor(dialect)

    def stamp(value: datetime) -> Any:
        """A timestamp exactly as the column type stores it (naive UTC; ISO text on SQLite)."""
        return processor(value) if processor is not None else value

    now = stamp(utcnow())
    # Message-IDs: 128 random bits like `make_message_id`, whose base32 step is pure Python
    # and, at tens of thousands of rows, a tenth of a planning pass.
    checked: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    for email in planned:
        domain = (
            message_id_domain
            or _domain_of(email.sender or owners.get(email.customer_id))
            or FALLBACK_ID_DOMAIN
        )
        if domain not in checked:
            make_message_id(domain)  # its checks of the domain, once per domain
            checked.add(domain)
        skipped = email.state == SKIPPED
        rows.append(
            (
                email.rule,
                email.customer_id,
                email.occurrence,
                email.template,
                email.sender,
                stamp(email.due_at),
                SKIPPED if skipped else DUE,
                0,
                f"<{secrets.token_hex(16)}@{domain}>",
                email.in_reply_to,
                email.note if skipped else None,
                0,
                now,
                now,
            )
        )
    columns = ", ".join(_PLANNED_COLUMNS)
    conflict = "ON CONFLICT (rule, customer_id, occurrence) DO NOTHING"  # also a key twice in `planned`
    if dialect.name == "postgresql":
        arrays = ", ".join(f"%b::{kind}[]" for kind in _PLANNED_PG_TYPES)  # %b: binary, no text quoting
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) SELECT * FROM unnest({arrays}) {conflict}"
        result = connection.exec_driver_sql(
            statement, tuple(list(column) for column in zip(*rows, strict=True))
        )
    else:
        markers = ", ".join("?" * len(_PLANNED_COLUMNS))
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) VALUES ({markers}) {conflict}"
        result = connection.exec_driver_sql(statement, rows)
    return max(result.rowcount, 0)


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
    if rows:
        session.execute(
            insert(_ATTEMPT),
            [
                {
                    "outbox_id": r.id,
                    "at": r.attempt_started_at or now,
                    "outcome": ATTEMPT_AMBIGUOUS,
                    "code": None,
                    "reply": INTERRUPTED_RESEND if r.id in resend else INTERRUPTED_HOLD,
                }
                for r in rows
            ],
        )
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
        confirm_stored(session, now=now)
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


def _attempt(
    session: Session, outbox_id: int, outcome: str, at: datetime, code: int | None, reply: str | None
) -> None:
    session.execute(
        insert(_ATTEMPT).values(outbox_id=outbox_id, at=at, outcome=outcome, code=code, reply=reply)
    )


class _RawSql:
    """Hand-written SQL for the sender's hot path, run straight on the driver.

    SQLAlchemy's per-row work (parameter construction, type processing, insert-many
    rewriting) costs more than SQLite itself at a thousand rows a second, so
    `record` binds plain values here: timestamps go through the dialect's own
    DateTime processor, so they compare with the ones SQLAlchemy wrote.
    """

    def __init__(self, dialect: Any) -> None:
        self.postgres = dialect.name == "postgresql"
        self._stamp = DateTime().bind_processor(dialect)
        json = "CAST(? AS JSON)" if self.postgres else "?"
        self.start = (
            "UPDATE outbox SET attempt_started_at = ?, updated_at = ? "
            "WHERE state = 'claimed' AND claimed_by = ? AND id IN ({ids}) RETURNING id"
        )
        # By id only: with `state = 'sent'` in the WHERE, SQLite walks every sent row.
        self.states = "SELECT id, state FROM outbox WHERE id IN ({ids})"
        self.sent = self._q(
            "UPDATE outbox SET state = 'sent', sent_at = ?, sender = ?, attempts = attempts + 1, "
            "attempt_started_at = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ? "
            "WHERE id = ? AND state <> 'sent'"
        )
        self.message = self._q(
            "INSERT INTO message (message_id, thread_key, direction, mailbox, folder, from_address, "
            "subject, sent_at, snippet, is_auto_reply, is_bounce, is_malformed, created_at) "
            "VALUES (?, ?, 'out', ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING"
        )
        self.message_ids = "SELECT message_id, id FROM message WHERE message_id IN ({ids})"
        self.link = self._q(
            "INSERT INTO message_link (message_pk, customer_id, role) VALUES (?, ?, 'to') "
            "ON CONFLICT (message_pk, customer_id, role) DO NOTHING"
        )
        self.shown = (
            "SELECT customer_id, message_pk FROM timeline_event "
            "WHERE kind = 'email_out' AND message_pk IN ({ids})"
        )
        self.event = self._q(
            "INSERT INTO timeline_event (customer_id, kind, at, message_pk, payload) "
            f"VALUES (?, 'email_out', ?, ?, {json})"
        )
        self.attempt = self._q(
            "INSERT INTO outbox_attempt (outbox_id, at, outcome, code, reply) VALUES (?, ?, ?, ?, ?)"
        )

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def in_(self, sql: str, count: int) -> str:
        """`sql` with `{ids}` expanded to `count` placeholders."""
        return self._q(sql.format(ids=", ".join("?" * count)))

    def stamp(self, value: datetime) -> Any:
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return self._stamp(naive) if self._stamp else naive


_RAW: dict[str, _RawSql] = {}


def _raw(connection: Any) -> _RawSql:
    dialect = connection.dialect
    found = _RAW.get(dialect.name)
    if found is None:
        found = _RAW[dialect.name] = _RawSql(dialect)
    return found


def record(
    db: Database,
    *,
    sent: Sequence[SentRecord] = (),
    starting: Sequence[ClaimedEmail] = (),
    now: datetime | None = None,
) -> tuple[set[int], set[int]]:
    """One transaction for many rows (the sender's group commit).

    `sent` rows are recorded as sent (see `mark_sent`), then `starting` rows get
    `attempt_started_at` (see `mark_sending`). Both in one commit, so a sender that
    queues a connection's sent row before that connection's next start never has two
    rows of one connection inside a transaction. Returns the ids that may send their
    final "." and the ids recorded as sent for the first time.
    """
    with db.write() as session:
        connection = session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        return _record(driver, _raw(connection), sent, starting, now or utcnow())


def _record(
    driver: Any, sql: _RawSql, sent: Sequence[SentRecord], starting: Sequence[ClaimedEmail], moment: datetime
) -> tuple[set[int], set[int]]:
    cursor = driver.cursor()  # inside the caller's transaction
    try:
        first = _record_sent(cursor, sql, sent) if sent else set()
        started = _start(cursor, sql, starting, moment) if starting else set()
    finally:
        cursor.close()
    return started, first


class RecordConnection:
    """A connection of its own for the sender's group commits (`record` without a session).

    A session per commit costs more than the commit itself; this keeps one pooled
    driver connection and runs BEGIN/COMMIT on it. Not for concurrent use: the
    sender's `Recorder` commits one group at a time.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._driver: Any = None
        self._sql = _raw(db.engine)
        self._errors: Any = db.engine.dialect.loaded_dbapi.Error

    def record(
        self,
        *,
        sent: Sequence[SentRecord] = (),
        starting: Sequence[ClaimedEmail] = (),
        now: datetime | None = None,
    ) -> tuple[set[int], set[int]]:
        """As `record`; raises `DatabaseError` (the connection is dropped and reopened next time)."""
        try:
            if self._driver is None:
                self._driver = self._db.engine.raw_connection()
            driver = self._driver
            if self._sql.postgres:
                found = _record(driver, self._sql, sent, starting, now or utcnow())
            else:
                driver.execute("BEGIN IMMEDIATE")  # the write lock up front, as `Database.write`
                found = _record(driver, self._sql, sent, starting, now or utcnow())
            driver.commit()
            return found
        except self._errors as exc:
            self.close()
            raise DatabaseError(f"database error on {self._db.display_url}: {exc}") from exc
        except BaseException:
            self.close()  # never leave the write lock held
            raise

    def close(self) -> None:
        """Give the connection back (rolled back if a transaction was left open)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(self._errors):
                driver.rollback()
            driver.close()


def _start(cursor: Any, sql: _RawSql, rows: Sequence[ClaimedEmail], moment: datetime) -> set[int]:
    by_worker: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_worker[row.claimed_by].append(row.id)
    stamp = sql.stamp(moment)
    started: set[int] = set()
    for worker, ids in by_worker.items():
        for chunk in _chunks(ids):
            cursor.execute(sql.in_(sql.start, len(chunk)), (stamp, stamp, worker, *chunk))
            started.update(found[0] for found in cursor.fetchall())
    return started


def _select_in(cursor: Any, sql: _RawSql, query: str, keys: Sequence[Any]) -> list[Any]:
    found: list[Any] = []
    for chunk in _chunks(keys):
        cursor.execute(sql.in_(query, len(chunk)), tuple(chunk))
        found += cursor.fetchall()
    return found


def _record_sent(cursor: Any, sql: _RawSql, records: Sequence[SentRecord]) -> set[int]:
    """Set-based `mark_sent`: a fixed number of statements per group, not per row."""
    unique = list({r.row.id: r for r in records}.values())
    states = _select_in(cursor, sql, sql.states, [r.row.id for r in unique])
    already = {found[0] for found in states if found[1] == SENT}
    fresh = [r for r in unique if r.row.id not in already]
    stamps = {id(r): sql.stamp(r.at) for r in records}
    if fresh:
        cursor.executemany(sql.sent, [(stamps[id(r)], r.sender, stamps[id(r)], r.row.id) for r in fresh])
    cursor.executemany(
        sql.message,
        [
            (
                r.row.message_id,
                r.thread_key or r.row.message_id,
                r.sender,
                r.sender,
                r.subject,
                stamps[id(r)],
                r.snippet,
                False,
                False,
                False,
                stamps[id(r)],
            )
            for r in unique
        ],
    )
    all_new = cursor.rowcount == len(unique)  # else some were there (sync found them in Sent first)
    pks = dict(_select_in(cursor, sql, sql.message_ids, [r.row.message_id for r in unique]))
    cursor.executemany(sql.link, [(pks[r.row.message_id], r.row.customer_id) for r in unique])
    shown: set[tuple[int, int]] = set()
    if not all_new:  # a new message has no timeline event yet
        shown = {(e[0], e[1]) for e in _select_in(cursor, sql, sql.shown, sorted(set(pks.values())))}
    events = []
    for r in unique:
        key = (r.row.customer_id, pks[r.row.message_id])
        if key not in shown:
            shown.add(key)
            payload = {"rule": r.row.rule, "template": r.row.template, "outbox_id": r.row.id}
            events.append((key[0], stamps[id(r)], key[1], json.dumps(payload)))
    if events:
        cursor.executemany(sql.event, events)
    cursor.executemany(
        sql.attempt, [(r.row.id, stamps[id(r)], ATTEMPT_SENT, r.code, r.reply) for r in records]
    )
    return {r.row.id for r in fresh}


def mark_sending(db: Database, row: ClaimedEmail, now: datetime | None = None) -> bool:
    """Record that the final "." is about to be sent; False: the row is no longer ours (do not send)."""
    started, _ = record(db, starting=[row], now=now)
    return row.id in started


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
    code: int | None = 250,
    reply: str | None = None,
) -> bool:
    """The server accepted the message: the row is sent, and the customer's timeline shows it.

    The message is stored under its Message-ID like synced mail, so the copy that
    sync later finds in the Sent folder is recognised, not added twice. Returns False
    when the row had already been marked sent (a duplicate delivery).
    """
    sent = SentRecord(
        row=row,
        sender=sender,
        recipient=recipient,
        subject=subject,
        snippet=snippet,
        thread_key=thread_key,
        at=now or utcnow(),
        code=code,
        reply=reply,
    )
    _, first = record(db, sent=[sent])
    return row.id in first


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
    code: int | None = None,
    reply: str | None = None,
) -> bool:
    """Back to `due` at `next_at`. `attempted` False: nothing reached the server (not counted).

    An attempt goes into the row's history with the server's `code` and `reply`
    (default: `error`).
    """
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
        changed = _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))
        if attempted:
            outcome = ATTEMPT_AMBIGUOUS if ambiguous else ATTEMPT_RETRY
            _attempt(session, row.id, outcome, moment, code, reply or error)
        return changed


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


def _finish(
    db: Database,
    row: ClaimedEmail,
    values: dict[str, Any],
    attempt: tuple[str, int | None, str | None] | None = None,
    event: tuple[str, dict[str, Any]] | None = None,
) -> bool:
    """End the row's claim; `attempt` (outcome, code, reply) goes into its history, and
    `event` (kind, payload) onto the customer's timeline if this call ended the claim."""
    moment = values.setdefault("updated_at", utcnow())
    values.update(attempt_started_at=None, claimed_by=None, claimed_until=None)
    with db.write() as session:
        changed = _changed(session.execute(update(_OUTBOX).where(_mine(row)).values(**values)))
        if attempt is not None:
            _attempt(session, row.id, attempt[0], moment, attempt[1], attempt[2])
        if event is not None and changed:
            session.execute(
                insert(_EVENT).values(
                    customer_id=row.customer_id, kind=event[0], at=moment, message_pk=None, payload=event[1]
                )
            )
        return changed


def mark_failed(
    db: Database,
    row: ClaimedEmail,
    error: str,
    *,
    attempted: bool = True,
    now: datetime | None = None,
    outcome: str = ATTEMPT_FAILED,
    code: int | None = None,
    reply: str | None = None,
    notify: str | None = None,
) -> bool:
    """Give up on the row; `error` (the server's reply or the template error) is kept.

    `attempted`: the server was asked, and the attempt (`outcome`: failed or
    suppressed, with `code` and `reply`) goes into the row's history. `notify` (the
    salesperson to tell) puts a `send_failed` event on the customer's timeline, in the
    same transaction, so the owner learns of it exactly once.
    """
    values: dict[str, Any] = {"state": FAILED, "last_error": error, "updated_at": now or utcnow()}
    if attempted:
        values["attempts"] = _OUTBOX.c.attempts + 1
    event: tuple[str, dict[str, Any]] | None = None
    if notify is not None:
        payload = {
            "summary": f"automated email '{row.rule}' was not sent: {error}",
            "rule": row.rule,
            "template": row.template,
            "outbox_id": row.id,
            "reason": error,
            "salesperson": notify,
            "message_id": row.message_id,
        }
        event = (SEND_FAILED_EVENT, payload)
    return _finish(db, row, values, (outcome, code, reply or error) if attempted else None, event)


def mark_unknown(
    db: Database,
    row: ClaimedEmail,
    error: str,
    *,
    now: datetime | None = None,
    code: int | None = None,
    reply: str | None = None,
) -> bool:
    """The server may or may not have the message: hold the row for a person."""
    values: dict[str, Any] = {
        "state": UNKNOWN,
        "last_error": error,
        "attempts": _OUTBOX.c.attempts + 1,
        "ambiguous_attempts": _OUTBOX.c.ambiguous_attempts + 1,
        "updated_at": now or utcnow(),
    }
    return _finish(db, row, values, (ATTEMPT_AMBIGUOUS, code, reply or error))


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


def skip_late(db: Database, before: datetime, reason: Callable[[datetime], str | None], now: datetime) -> int:
    """Skip due rows that were never attempted and are due before `before` (catch-up grace).

    `reason(due_at)` gives each row its skip reason (None: keep it). Set-based, in chunks,
    so a backlog left by a long outage costs a few statements rather than a transaction
    per row; on PostgreSQL rows another sender holds are left to it. Returns the count.
    """
    query = (
        select(_OUTBOX.c.id, _OUTBOX.c.due_at)
        .where(
            _OUTBOX.c.state == DUE,
            _OUTBOX.c.due_at < before,
            _OUTBOX.c.attempts == 0,
            _OUTBOX.c.ambiguous_attempts == 0,
            _OUTBOX.c.deadline_at.is_(None),
        )
        .order_by(_OUTBOX.c.due_at, _OUTBOX.c.id)
        .limit(_LATE_CHUNK)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("pk"), _OUTBOX.c.state == DUE)
        .values(state=SKIPPED, skip_reason=bindparam("reason"), updated_at=now)
    )
    total = 0
    for _ in range(_LATE_ROUNDS):  # bounded: each round skips a chunk or ends the loop
        with db.write() as session:
            found = list(session.execute(query))
            values = [{"pk": r.id, "reason": why} for r in found if (why := reason(r.due_at)) is not None]
            if values:
                session.execute(statement, values)
        total += len(values)
        if len(found) < _LATE_CHUNK or not values:
            break
    return total


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


def send_checks(
    session: Session,
    rows: Sequence[ClaimedEmail],
    prepared: Mapping[int, Prepared],
    now: datetime,
    window: timedelta,
) -> dict[int, SendCheck]:
    """Status, suppression, reply and frequency of many rows, with a fixed number of queries.

    Read just before the rows are sent (the sender reads them again for a row whose
    answer is older than a second or two), so what changed since planning counts.
    """
    customers = sorted({row.customer_id for row in rows})
    recipients = sorted({p.recipient for p in prepared.values() if p.recipient})
    followers = sorted({r.customer_id for r in rows if (p := prepared.get(r.id)) and p.reply_since})
    status: dict[int, str] = {}
    recent: dict[int, int] = {}
    for chunk in _chunks(customers):
        query = select(_CUSTOMER.c.id, _CUSTOMER.c.status).where(_CUSTOMER.c.id.in_(chunk))
        status.update({c.id: c.status for c in session.execute(query)})
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
        checks[row.id] = SendCheck(
            status=status.get(row.customer_id),
            suppressed=suppressed.get(facts.recipient) if facts and facts.recipient else None,
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


def soft_bounces(
    db: Database, customer_id: int, since: datetime, is_soft: Callable[[int | None, str | None], bool]
) -> int:
    """Attempts to the customer since `since` whose reply `is_soft` calls a soft bounce.

    Counted from the attempt history, so it holds across rows, rules and restarts. The
    history keeps no recipient: all of the customer's attempts count, which is the
    primary address in all but the rare case of an address changed inside the window.
    """
    query = (
        select(_ATTEMPT.c.code, _ATTEMPT.c.reply)
        .join(_OUTBOX, _OUTBOX.c.id == _ATTEMPT.c.outbox_id)
        .where(_OUTBOX.c.customer_id == customer_id, _ATTEMPT.c.at >= since, _ATTEMPT.c.code >= 400)
    )
    with db.read() as session:
        return sum(1 for code, reply in session.execute(query) if is_soft(code, reply))


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
            extra = {
                name: getattr(row, name)
                for name in OutboxDetail.model_fields
                if name not in fields and name != "history"
            }
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
    view.history = history(session, outbox_id)
    return view


def history(session: Session, outbox_id: int) -> list[AttemptView]:
    """Every delivery attempt of a row, oldest first."""
    query = (
        select(_ATTEMPT.c.at, _ATTEMPT.c.outcome, _ATTEMPT.c.code, _ATTEMPT.c.reply)
        .where(_ATTEMPT.c.outbox_id == outbox_id)
        .order_by(_ATTEMPT.c.at, _ATTEMPT.c.id)
    )
    return [
        AttemptView(at=a.at, outcome=a.outcome, code=a.code, reply=a.reply) for a in session.execute(query)
    ]


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


# --- confirmation by the mailbox (S3) -------------------------------------------------------

ATTEMPT_CONFIRMED = "confirmed"


def confirm_from_mailbox(
    session: Session, message_ids: Iterable[str], *, mailbox: str, folder: str, now: datetime | None = None
) -> list[int]:
    """Rows in `delivery_unknown` whose Message-ID a sync just found in a mailbox folder
    (the copy the provider filed in Sent) are `sent`: the server did take the message.

    Called by the sync in the transaction that stores the batch; one UPDATE per chunk of
    Message-IDs. `sent_at` is the time the outcome became unknown (the attempt), and an
    attempt with outcome `confirmed` names the folder. Returns the confirmed row ids.
    """
    moment = now or utcnow()
    confirmed: list[int] = []
    for chunk in _chunks(sorted(set(message_ids))):
        result = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.state == UNKNOWN, _OUTBOX.c.message_id.in_(list(chunk)))
            .values(state=SENT, sent_at=_OUTBOX.c.updated_at, updated_at=moment)
            .returning(_OUTBOX.c.id)
        )
        ids = sorted(int(pk) for pk in result.scalars())
        if ids:
            _record_confirmed(session, dict.fromkeys(ids, f"found in {folder} of {mailbox}"), moment)
            confirmed.extend(ids)
    return confirmed


def _record_confirmed(session: Session, replies: Mapping[int, str], moment: datetime) -> None:
    """One `confirmed` attempt per row (row id -> where its copy was found)."""
    session.execute(
        insert(_ATTEMPT),
        [
            {"outbox_id": pk, "at": moment, "outcome": ATTEMPT_CONFIRMED, "code": None, "reply": reply}
            for pk, reply in sorted(replies.items())
        ],
    )


def confirm_stored(session: Session, *, now: datetime | None = None) -> list[int]:
    """Rows in `delivery_unknown` whose Message-ID is already in `message` are `sent`.

    `confirm_from_mailbox` only sees the messages a sync is storing: a Sent copy stored
    before the row's outcome became unknown (its sender died and a later claim set it
    aside) would otherwise never confirm it. `claim` runs this in its transaction, right
    after settling such rows; one UPDATE, which the (state, due_at) index keeps cheap.
    Returns the confirmed row ids.
    """
    moment = now or utcnow()
    stored = select(_MESSAGE.c.id).where(_MESSAGE.c.message_id == _OUTBOX.c.message_id).exists()
    result = session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.state == UNKNOWN, stored)
        .values(state=SENT, sent_at=_OUTBOX.c.updated_at, updated_at=moment)
        .returning(_OUTBOX.c.id, _OUTBOX.c.message_id)
    )
    rows = {row.message_id: int(row.id) for row in result}
    if not rows:
        return []
    replies = dict.fromkeys(rows.values(), "found in a stored message")
    for chunk in _chunks(sorted(rows)):
        query = select(_MESSAGE.c.message_id, _MESSAGE.c.mailbox, _MESSAGE.c.folder)
        for found in session.execute(query.where(_MESSAGE.c.message_id.in_(list(chunk)))):
            if found.folder and found.mailbox:
                replies[rows[found.message_id]] = f"found in {found.folder} of {found.mailbox}"
    _record_confirmed(session, replies, moment)
    return sorted(replies)


# --- bounces found by a sync ----------------------------------------------------------------

ATTEMPT_BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class FoundBounce:
    """A bounce a sync stored, as the outbox history tells it (`record_bounces`)."""

    reply: str  # e.g. '5.1.1 hard: user unknown (reported by alice@team.example)'
    hard: bool
    code: int | None = None


def record_bounces(
    session: Session, bounces: Mapping[str, FoundBounce], *, now: datetime | None = None
) -> list[int]:
    """Attach bounces a sync found to the outbox rows they returned (original Message-ID).

    The server took these messages, so the send-time history says `sent`; without this the
    row never shows that the recipient's server gave it back. Each row gets one `bounced`
    attempt (a resync or a second copy of the report adds nothing), and a hard bounce
    becomes the row's `last_error`; `state` stays as it is. Called by the sync in the
    transaction that stores the batch: one SELECT per chunk of Message-IDs, one INSERT,
    one UPDATE. Returns the row ids that got an attempt.
    """
    if not bounces:
        return []
    moment = now or utcnow()
    already = (
        select(_ATTEMPT.c.id)
        .where(_ATTEMPT.c.outbox_id == _OUTBOX.c.id, _ATTEMPT.c.outcome == ATTEMPT_BOUNCED)
        .exists()
    )
    rows: dict[int, FoundBounce] = {}
    for chunk in _chunks(sorted(bounces)):
        query = select(_OUTBOX.c.id, _OUTBOX.c.message_id).where(
            _OUTBOX.c.message_id.in_(list(chunk)), ~already
        )
        for row in session.execute(query):
            rows[int(row.id)] = bounces[row.message_id]
    if not rows:
        return []
    session.execute(
        insert(_ATTEMPT),
        [
            {
                "outbox_id": pk,
                "at": moment,
                "outcome": ATTEMPT_BOUNCED,
                "code": found.code,
                "reply": found.reply,
            }
            for pk, found in sorted(rows.items())
        ],
    )
    hard = [{"pk": pk, "error": found.reply} for pk, found in sorted(rows.items()) if found.hard]
    if hard:
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == bindparam("pk"))
            .values(last_error=bindparam("error"), updated_at=moment),
            hard,
        )
    return sorted(rows)
