"""The values the outbox hands out: claimed rows, what the CLI prints, and a batch's send-time facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from mailcrm.store.customers import CustomerView


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
    outcome: str  # sent, retry, failed, suppressed, ambiguous, bounced, confirmed
    code: int | None
    reply: str | None
    reason: str | None = None  # why the server refused or returned it (`domain.bounce_reasons`)


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
