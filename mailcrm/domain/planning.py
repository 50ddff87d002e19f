"""What the planner decides: one planned email per (rule, customer, occurrence).

The triple is the outbox's unique key, so planning again, after a crash or on
another machine, creates nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PlannedEmail:
    """One email a rule asks for; `due_at` is UTC and already inside the send window."""

    rule: str
    customer_id: int
    occurrence: str
    template: str
    due_at: datetime
    sender: str | None = None  # salesperson email; None: the customer's owner
    in_reply_to: str | None = None  # Message-ID this email follows up (threads under it)
    state: str = "due"  # "skipped" for occurrences found too late (catch-up grace exceeded)
    note: str | None = None  # why it was skipped, for `outbox show`
