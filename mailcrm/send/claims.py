"""The outbox rows one sender holds: claimed under a lease, renewed, given back.

A row never attempted and due longer ago than `planning.grace_hours` (the daemon
was down) is skipped as late instead of sent, as the planner does with such
occurrences.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from mailcrm.domain.retry import SEND_SLACK, ever_attempted, late_reason
from mailcrm.domain.rules import format_duration
from mailcrm.errors import DatabaseError
from mailcrm.settings import Settings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail

log = logging.getLogger("mailcrm.send.worker")  # the sender's events keep one logger name


class Claims:
    """Claims of one worker id (blocking methods: run them in a thread)."""

    def __init__(self, db: Database, settings: Settings, worker_id: str, now: Callable[[], datetime]) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id
        self._now = now

    @property
    def grace(self) -> timedelta:
        """The planning catch-up grace, applied again at send time."""
        return timedelta(hours=self.settings.planning.grace_hours)

    def claim(self, lease: timedelta) -> list[ClaimedEmail]:
        """Up to `sending.batch_size` due rows, held until `lease` from now."""
        sending = self.settings.sending
        return outbox.claim(
            self.db, self.worker_id, sending.batch_size, lease, self._now(), ambiguous=sending.ambiguous
        )

    def release(self) -> int:
        """Give every claim back (one inside a transaction follows `sending.ambiguous`)."""
        return outbox.release(self.db, self.worker_id, self._now(), ambiguous=self.settings.sending.ambiguous)

    async def renew(self, lease: timedelta) -> None:
        """Renew the claims while the batch runs, so nobody takes over live work (until cancelled)."""
        period = max(lease.total_seconds() / 3, 0.2)
        while True:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(outbox.extend_lease, self.db, self.worker_id, self._now() + lease)
            except DatabaseError as exc:
                log.warning("could not renew claims: %s", exc, extra={"action": "lease_renew_failed"})

    def late(self, row: ClaimedEmail, now: datetime) -> str | None:
        """Why the row is too late to send (claimed by a refill or taken over), or None."""
        attempted = ever_attempted(row.attempts, row.deadline_at, row.ambiguous_attempts)
        return late_reason(row.due_at, now, self.grace, attempted=attempted)

    def skip_late(self) -> int:
        """Skip, set-based, the due rows a restart finds too late to send (see `late`)."""
        now, grace = self._now(), self.grace
        skipped = outbox.skip_late(
            self.db,
            now - max(grace, SEND_SLACK),
            lambda due_at: late_reason(due_at, now, grace, attempted=False),
            now,
        )
        if skipped:
            log.warning(
                "%s outbox rows skipped as late: due more than %s ago and never attempted",
                skipped,
                format_duration(grace),
                extra={"action": "send_skipped_late", "worker": self.worker_id, "count": skipped},
            )
        return skipped
