"""What every part of the outbox shares: its tables, row states, attempt outcomes and chunking."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mailcrm.store.models import (
    Customer,
    DeliveryReport,
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
_REPORT = table_of(DeliveryReport)

_CHUNK = 500

DUE = OutboxState.DUE.value
CLAIMED = OutboxState.CLAIMED.value
SENT = OutboxState.SENT.value
FAILED = OutboxState.FAILED.value
SKIPPED = OutboxState.SKIPPED.value
CANCELLED = OutboxState.CANCELLED.value
UNKNOWN = OutboxState.DELIVERY_UNKNOWN.value


# Outcomes in the attempt history (`outbox_attempt.outcome`).
ATTEMPT_SENT = "sent"
ATTEMPT_RETRY = "retry"
ATTEMPT_FAILED = "failed"
ATTEMPT_SUPPRESSED = "suppressed"
ATTEMPT_AMBIGUOUS = "ambiguous"
ATTEMPT_CONFIRMED = "confirmed"
ATTEMPT_BOUNCED = "bounced"


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _changed(result: Any) -> bool:
    return bool(getattr(result, "rowcount", 0))
