"""What became of a claimed row (`Outcome`), why a send-time check refused it (`Refusal`),
and a batch's counts (`SendStats`).

Every step of a row's path returns one of these rather than a string, so a typo is a
type error and the counts need no name lookup.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """How one claimed row ended in this batch."""

    SENT = "sent"
    RETRIED = "retried"  # back to due after a backoff
    FAILED = "failed"
    SKIPPED = "skipped"  # late, archived, suppressed, over the frequency cap
    CANCELLED = "cancelled"  # a follow-up made moot by a reply
    UNKNOWN = "unknown"  # delivery unknown, held for a person (`sending.ambiguous: hold`)
    DEFERRED = "deferred"  # waits without an attempt: daily cap, paused account, internal error
    RELEASED = "released"  # taken away (or stopped) before its transaction began: given back


@dataclass(frozen=True, slots=True)
class Refusal:
    """A send-time check says no: `outcome` is FAILED, SKIPPED or CANCELLED."""

    outcome: Outcome
    reason: str


@dataclass
class SendStats:
    """What one batch did (`claimed` = the sum of the others plus rows given back)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    unknown: int = 0
    deferred: int = 0
    released: int = 0

    def count(self, outcome: Outcome, times: int = 1) -> None:
        """Count `times` rows that ended as `outcome`."""
        match outcome:
            case Outcome.SENT:
                self.sent += times
            case Outcome.RETRIED:
                self.retried += times
            case Outcome.FAILED:
                self.failed += times
            case Outcome.SKIPPED:
                self.skipped += times
            case Outcome.CANCELLED:
                self.cancelled += times
            case Outcome.UNKNOWN:
                self.unknown += times
            case Outcome.DEFERRED:
                self.deferred += times
            case Outcome.RELEASED:
                self.released += times

    def add(self, other: SendStats) -> None:
        """Add another batch's counts (a run's totals)."""
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.cancelled += other.cancelled
        self.unknown += other.unknown
        self.deferred += other.deferred
        self.released += other.released
