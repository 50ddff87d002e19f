"""Every table, in one module (the SQLModel convention): data only, no behaviour.

Timestamps are UTC (`UTCDateTime`), money is integer minor units plus an ISO 4217
code, addresses and domains are stored normalised (see `domain.addresses`).
Indexes follow the hot paths: address lookup, a customer's timeline, due outbox rows.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import JSON, Index, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from mailcrm.store.types import IdType, UTCDateTime, utcnow


class CustomerStatus(StrEnum):
    LEAD = "lead"
    CUSTOMER = "customer"
    ARCHIVED = "archived"


class Direction(StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class LinkRole(StrEnum):
    FROM = "from"
    TO = "to"
    CC = "cc"


class OutboxState(StrEnum):
    DUE = "due"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    DELIVERY_UNKNOWN = "delivery_unknown"


def _id() -> Any:
    return Field(default=None, primary_key=True, sa_type=IdType)


OnDelete = Literal["CASCADE", "SET NULL", "RESTRICT"]


def _fk(target: str, *, nullable: bool = False, index: bool = False, ondelete: OnDelete = "CASCADE") -> Any:
    return Field(
        default=None if nullable else ...,
        foreign_key=target,
        ondelete=ondelete,
        nullable=nullable,
        index=index,
        sa_type=IdType,
    )


def _when(*, index: bool = False, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, index=index, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, index=index, nullable=False)


class Salesperson(SQLModel, table=True):
    """A member of the sales team; owns customers and a mailbox. Mirrors the config file."""

    __tablename__ = "salesperson"

    id: int | None = _id()
    email: str = Field(sa_type=String(254), unique=True)
    name: str = Field(sa_type=String(200))
    language: str | None = Field(default=None, sa_type=String(35))
    timezone: str | None = Field(default=None, sa_type=String(64))
    created_at: datetime = _when()


class Company(SQLModel, table=True):
    """An organisation several customers can belong to."""

    __tablename__ = "company"

    id: int | None = _id()
    name: str = Field(sa_type=String(200), unique=True)
    created_at: datetime = _when()


class CompanyDomain(SQLModel, table=True):
    """A mail domain owned by a company: mail from it attaches to the company's people."""

    __tablename__ = "company_domain"

    id: int | None = _id()
    company_id: int = _fk("company.id", index=True)
    domain: str = Field(sa_type=String(253), unique=True)


class Customer(SQLModel, table=True):
    """A person the team sells to (a lead until the first purchase)."""

    __tablename__ = "customer"
    __table_args__ = (Index("ix_customer_owner_status", "owner_id", "status"),)

    id: int | None = _id()
    name: str = Field(sa_type=String(200), index=True)
    company_id: int | None = _fk("company.id", nullable=True, index=True, ondelete="SET NULL")
    phone: str | None = Field(default=None, sa_type=String(40))
    birthday: date | None = Field(default=None)
    timezone: str | None = Field(default=None, sa_type=String(64))
    language: str | None = Field(default=None, sa_type=String(35))
    owner_id: int | None = _fk("salesperson.id", nullable=True, ondelete="SET NULL")
    lead_source: str | None = Field(default=None, sa_type=String(100), index=True)
    status: str = Field(default=CustomerStatus.LEAD.value, sa_type=String(16))
    # None: every automated email; "purchases": only emails about a purchase (the
    # unsubscribe page's "fewer emails"; the sender skips the others).
    email_preference: str | None = Field(default=None, sa_type=String(16))
    custom: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _when()
    updated_at: datetime = _when()


class CustomerTag(SQLModel, table=True):
    """A label on a customer; a table (not a JSON list) so segments are plain SQL."""

    __tablename__ = "customer_tag"
    __table_args__ = (Index("ix_customer_tag_tag", "tag"),)

    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE", primary_key=True, sa_type=IdType)
    tag: str = Field(sa_type=String(63), primary_key=True)


class EmailAddress(SQLModel, table=True):
    """One of a customer's addresses; an address belongs to one customer only."""

    __tablename__ = "email_address"

    id: int | None = _id()
    customer_id: int = _fk("customer.id", index=True)
    address: str = Field(sa_type=String(254), unique=True)
    is_primary: bool = Field(default=False)
    created_at: datetime = _when()


class Purchase(SQLModel, table=True):
    """Something a customer bought. `dedupe_key` makes re-imports change nothing.

    `purchased_on` is the customer's local calendar date (what anniversaries, win-backs
    and rule dates read), fixed when the purchase is recorded; `purchased_at` is the
    instant (for a date given without a time, `has_time` false, the start of that local
    day). See `domain.purchases`.
    """

    __tablename__ = "purchase"
    __table_args__ = (
        UniqueConstraint("customer_id", "dedupe_key", name="uq_purchase_customer_dedupe"),
        Index("ix_purchase_customer_when", "customer_id", "purchased_at"),
        Index("ix_purchase_customer_on", "customer_id", "purchased_on"),
        Index("ix_purchase_product", "product"),
    )

    id: int | None = _id()
    customer_id: int = _fk("customer.id")
    purchased_at: datetime = Field(sa_type=UTCDateTime)
    purchased_on: date
    has_time: bool = Field(default=True)
    product: str = Field(sa_type=String(200))
    quantity: int = Field(default=1)
    amount_minor: int = Field(default=0, sa_type=IdType)
    currency: str = Field(sa_type=String(3))
    order_ref: str | None = Field(default=None, sa_type=String(100))
    dedupe_key: str = Field(sa_type=String(64))
    created_at: datetime = _when()


class Note(SQLModel, table=True):
    """A free-text note a salesperson left on a customer."""

    __tablename__ = "note"
    __table_args__ = (Index("ix_note_customer_when", "customer_id", "created_at"),)

    id: int | None = _id()
    customer_id: int = _fk("customer.id")
    author: str = Field(sa_type=String(254))
    text: str = Field(sa_type=Text)
    created_at: datetime = _when()


class Message(SQLModel, table=True):
    """An email seen in a team mailbox or sent by mailcrm, stored once per Message-ID."""

    __tablename__ = "message"

    id: int | None = _id()
    message_id: str = Field(sa_type=String(998), unique=True)
    thread_key: str | None = Field(default=None, sa_type=String(998), index=True)
    direction: str = Field(sa_type=String(3))
    mailbox: str | None = Field(default=None, sa_type=String(254))
    folder: str | None = Field(default=None, sa_type=String(255))
    uid: int | None = Field(default=None, sa_type=IdType)
    from_address: str | None = Field(default=None, sa_type=String(254))
    subject: str | None = Field(default=None, sa_type=Text)
    sent_at: datetime | None = _when(nullable=True)
    snippet: str | None = Field(default=None, sa_type=Text)
    is_auto_reply: bool = Field(default=False)
    is_bounce: bool = Field(default=False)
    is_malformed: bool = Field(default=False)
    created_at: datetime = _when()


class MessageLink(SQLModel, table=True):
    """Which customers a message concerns, and in which header role."""

    __tablename__ = "message_link"

    message_pk: int = Field(foreign_key="message.id", ondelete="CASCADE", primary_key=True, sa_type=IdType)
    customer_id: int = Field(
        foreign_key="customer.id", ondelete="CASCADE", primary_key=True, sa_type=IdType, index=True
    )
    role: str = Field(sa_type=String(4), primary_key=True)


class MessageLocation(SQLModel, table=True):
    """Where a stored message sits in a synced folder, with its IMAP flags.

    One row per (mailbox, folder, UIDVALIDITY, UID): a message Cc'd to two salespeople
    has two locations and one `message` row. Expunges set `expunged_at` and keep the row,
    so the timeline never loses history when mail is deleted on the server.
    """

    __tablename__ = "message_location"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_message_location"),
    )

    id: int | None = _id()
    message_pk: int = _fk("message.id", index=True)
    mailbox: str = Field(sa_type=String(254))
    folder: str = Field(sa_type=String(255))
    uidvalidity: int | None = Field(default=None, sa_type=IdType)
    uid: int = Field(sa_type=IdType)
    flags: str = Field(default="", sa_type=String(1000))
    modseq: int | None = Field(default=None, sa_type=IdType)
    expunged_at: datetime | None = _when(nullable=True)


class TimelineEvent(SQLModel, table=True):
    """An interaction on a customer's timeline: email, open, click, bounce, unsubscribe, ..."""

    __tablename__ = "timeline_event"
    __table_args__ = (Index("ix_timeline_customer_at", "customer_id", "at"),)

    id: int | None = _id()
    customer_id: int = _fk("customer.id")
    kind: str = Field(sa_type=String(32))
    at: datetime = _when()
    message_pk: int | None = _fk("message.id", nullable=True, index=True, ondelete="SET NULL")
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class Suppression(SQLModel, table=True):
    """An address nothing may be sent to (unsubscribed, hard-bounced, complained, manual)."""

    __tablename__ = "suppression"

    id: int | None = _id()
    address: str = Field(sa_type=String(254), unique=True)
    reason: str = Field(sa_type=String(32))
    detail: str | None = Field(default=None, sa_type=Text)
    bounce_reason: str | None = Field(default=None, sa_type=String(32))  # e.g. userunknown
    status: str | None = Field(default=None, sa_type=String(32))  # e.g. 5.1.1
    created_at: datetime = _when()


class OutboxItem(SQLModel, table=True):
    """One planned email. The unique key makes planning idempotent across crashes and hosts.

    `attempt_started_at` is set just before the final "." of DATA is sent: a row left
    `claimed` with it set was inside the SMTP transaction when its sender died, so its
    delivery is unknown (see `store.outbox` for what happens to it).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("rule", "customer_id", "occurrence", name="uq_outbox_occurrence"),
        Index("ix_outbox_state_due", "state", "due_at"),
        Index("ix_outbox_sender_sent", "sender", "sent_at"),
    )

    id: int | None = _id()
    rule: str = Field(sa_type=String(200))
    customer_id: int = _fk("customer.id", index=True)
    occurrence: str = Field(sa_type=String(100))
    template: str = Field(sa_type=String(200))
    sender: str | None = Field(default=None, sa_type=String(254))
    due_at: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(default=OutboxState.DUE.value, sa_type=String(20))
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_type=Text)
    message_id: str = Field(sa_type=String(998), unique=True)
    in_reply_to: str | None = Field(default=None, sa_type=String(998))
    claimed_by: str | None = Field(default=None, sa_type=String(200))
    claimed_until: datetime | None = _when(nullable=True)
    sent_at: datetime | None = _when(nullable=True)
    deadline_at: datetime | None = _when(nullable=True)
    attempt_started_at: datetime | None = _when(nullable=True)
    ambiguous_attempts: int = Field(default=0)
    skip_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _when()
    updated_at: datetime = _when()


class OutboxAttempt(SQLModel, table=True):
    """One delivery attempt of an outbox row and the server's answer, kept for the audit trail."""

    __tablename__ = "outbox_attempt"

    id: int | None = _id()
    outbox_id: int = _fk("outbox.id", index=True)
    at: datetime = _when()
    outcome: str = Field(sa_type=String(20))
    code: int | None = Field(default=None)
    reply: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=String(32), index=True)  # bounce reason, if refused


class FolderCursor(SQLModel, table=True):
    """How far a mailbox folder is synced; moves only after the batch it covers is committed."""

    __tablename__ = "folder_cursor"
    __table_args__ = (UniqueConstraint("mailbox", "folder", name="uq_folder_cursor"),)

    id: int | None = _id()
    mailbox: str = Field(sa_type=String(254))
    folder: str = Field(sa_type=String(255))
    uidvalidity: int | None = Field(default=None, sa_type=IdType)
    last_uid: int = Field(default=0, sa_type=IdType)
    highestmodseq: int | None = Field(default=None, sa_type=IdType)
    messages: int = Field(default=0)
    errors: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_type=Text)
    last_sync_at: datetime | None = _when(nullable=True)


class DeliveryReport(SQLModel, table=True):
    """One recipient of a bounce, delay notice, success report or complaint found by sync.

    The reason is a column (sisimai's names, `domain.bounce_reasons`) so reports can
    count by it; `suppressed` says whether this report suppressed the address.
    """

    __tablename__ = "delivery_report"
    __table_args__ = (Index("ix_delivery_report_customer_at", "customer_id", "at"),)

    id: int | None = _id()
    at: datetime = _when()
    kind: str = Field(sa_type=String(16))  # bounced, delayed, delivered, complained
    reason: str = Field(sa_type=String(32), index=True)
    address: str | None = Field(default=None, sa_type=String(254), index=True)
    customer_id: int | None = _fk("customer.id", nullable=True, ondelete="SET NULL")
    message_pk: int | None = _fk("message.id", nullable=True, index=True, ondelete="SET NULL")
    original_message_id: str | None = Field(default=None, sa_type=String(998), index=True)
    status: str | None = Field(default=None, sa_type=String(32))
    diagnostic: str | None = Field(default=None, sa_type=Text)
    suppressed: bool = Field(default=False)
    sender_side: bool = Field(default=False)


class SenderIssue(SQLModel, table=True):
    """A failure caused by the sender's own setup, once per (sending domain, cause, receiving domain)."""

    __tablename__ = "sender_issue"
    __table_args__ = (UniqueConstraint("sender_domain", "cause", "receiving_domain", name="uq_sender_issue"),)

    id: int | None = _id()
    sender_domain: str = Field(sa_type=String(253))
    cause: str = Field(sa_type=String(32))  # a sender-side bounce reason: authfailure, blocked, ...
    receiving_domain: str = Field(sa_type=String(253))
    salesperson: str | None = Field(default=None, sa_type=String(254))
    status: str | None = Field(default=None, sa_type=String(32))
    detail: str | None = Field(default=None, sa_type=Text)  # the last reply or diagnostic
    count: int = Field(default=1)
    first_seen: datetime = _when()
    last_seen: datetime = _when()


class SigningKey(SQLModel, table=True):
    """A random key made once and kept in the database, so every daemon on it agrees."""

    __tablename__ = "signing_key"

    id: int | None = _id()
    name: str = Field(sa_type=String(64), unique=True)
    secret: str = Field(sa_type=String(128))  # hex
    created_at: datetime = _when()


class User(SQLModel, table=True):
    """Someone who logs in to the web dashboard or the API (`mailcrm users ...`).

    The table is `app_user`: `user` is a reserved word in PostgreSQL (`SELECT * FROM user`
    there shows the session's role). `email` is stored normalised (lower-case, IDNA
    domain), so it is unique whatever the case it was typed in. A salesperson user is
    tied to one `salesperson` row, whose customers it sees; an admin sees all.
    """

    __tablename__ = "app_user"

    id: int | None = _id()
    email: str = Field(sa_type=String(254), unique=True)
    role: str = Field(sa_type=String(16))  # domain.access.Role
    salesperson_id: int | None = Field(
        default=None, foreign_key="salesperson.id", ondelete="RESTRICT", unique=True, sa_type=IdType
    )
    password_hash: str = Field(sa_type=String(255))  # argon2id, PHC string
    disabled: bool = Field(default=False)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    password_changed_at: datetime = _when()
    last_login_at: datetime | None = _when(nullable=True)


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API: only its SHA-256 and an 8-character prefix are kept."""

    __tablename__ = "api_token"

    id: int | None = _id()
    user_id: int = _fk("app_user.id", index=True)
    prefix: str = Field(sa_type=String(16), unique=True)
    digest: str = Field(sa_type=String(64), unique=True)  # hex SHA-256 of the whole token
    scope: str = Field(sa_type=String(8))  # domain.access.Scope
    label: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime = _when()
    expires_at: datetime | None = _when(nullable=True)
    last_used_at: datetime | None = _when(nullable=True)
    revoked_at: datetime | None = _when(nullable=True)


class LoginThrottle(SQLModel, table=True):
    """Failed logins of one account email or one client address (`domain.throttle`).

    Kept in the database, so daemons sharing a PostgreSQL count together.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("counter", "key", name="uq_login_throttle"),)

    id: int | None = _id()
    counter: str = Field(sa_type=String(16))  # account or address
    key: str = Field(sa_type=String(254))
    failures: int = Field(default=0)
    last_failure_at: datetime | None = _when(nullable=True, index=True)
    locked_until: datetime | None = _when(nullable=True)


class AuditEntry(SQLModel, table=True):
    """Who changed what, when, and through which door (the CLI or the API)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target_at", "target", "at"),)

    id: int | None = _id()
    at: datetime = _when(index=True)
    actor: str = Field(sa_type=String(254))  # a user's email, or the OS user at the CLI
    via: str = Field(sa_type=String(8))  # cli or api
    action: str = Field(sa_type=String(64))  # e.g. user.add, token.revoke
    target: str = Field(sa_type=String(254))
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for set-based and bulk statements."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
