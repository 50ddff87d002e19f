"""A batch's send-time checks: what may have changed since planning.

A row never attempted and due longer ago than the planning grace (the daemon was
down) is late and skipped, as the planner does with such occurrences (`late`).
Archived customer, suppressed address, a reply that makes a follow-up moot, the
per-customer frequency cap: read set-based for the batch (`outbox.prepare`,
`outbox.send_checks`), and again for the rows still queued once older than
`CHECK_MAX_AGE`, since a large batch runs long.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

from mailcrm.domain.retry import ever_attempted, late_reason
from mailcrm.domain.rules import format_duration
from mailcrm.send.recorder import Recorder
from mailcrm.send.results import Outcome, Refusal
from mailcrm.settings import SendingSettings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import CustomerStatus
from mailcrm.store.outbox import ClaimedEmail, Prepared, SendCheck

CHECK_MAX_AGE = 2.0
"""Seconds a batch's send-time facts stay fresh; a row checked later reads its own again."""


class SendChecks:
    """The template data and send-time facts of one batch's claimed rows (a new one per batch)."""

    def __init__(self, db: Database, sending: SendingSettings, recorder: Recorder) -> None:
        self.db = db
        self.sending = sending
        self._recorder = recorder
        self.prepared: dict[int, Prepared] = {}
        self._checks: dict[int, SendCheck] = {}
        self._checked_at = 0.0  # loop time of `_checks`
        self._unchecked: dict[int, ClaimedEmail] = {}  # claimed rows no lane has taken yet
        self._refreshing = asyncio.Lock()
        self._sent_to: dict[int, list[float]] = defaultdict(list)  # customer → loop times sent this batch

    async def load(self, rows: list[ClaimedEmail], now: datetime) -> None:
        """Read the batch's template data and send-time facts, set-based."""
        self.prepared, self._checks = await asyncio.to_thread(self._prepare, rows, now)
        self._checked_at = asyncio.get_running_loop().time()
        self._unchecked = {row.id: row for row in rows}

    async def add(self, rows: list[ClaimedEmail]) -> None:
        """Read a refill's template data; its facts are read when its first row is taken."""
        self.prepared.update(await asyncio.to_thread(self._prepare_only, rows))
        self._unchecked.update((row.id, row) for row in rows)

    def forget(self, row: ClaimedEmail) -> None:
        """The row is done: a long run must not keep every row in memory."""
        self.prepared.pop(row.id, None)
        self._checks.pop(row.id, None)

    def sent(self, customer_id: int) -> None:
        """Count a send of this run towards the customer's frequency cap."""
        self._sent_to[customer_id].append(asyncio.get_running_loop().time())

    def _prepare_only(self, rows: list[ClaimedEmail]) -> dict[int, Prepared]:
        with self.db.read() as session:
            return outbox.prepare(session, rows)

    def _prepare(
        self, rows: list[ClaimedEmail], now: datetime
    ) -> tuple[dict[int, Prepared], dict[int, SendCheck]]:
        window = self.sending.frequency_window
        with self.db.read() as session:
            prepared = outbox.prepare(session, rows)
            return prepared, outbox.send_checks(session, rows, prepared, now, window)

    async def check(self, row: ClaimedEmail, now: datetime) -> SendCheck:
        """The row's send-time facts: read with its batch, or again (with every row still
        queued) when older than `CHECK_MAX_AGE` or claimed by a refill.

        Sends of this run after the read count towards the frequency cap (the
        customer lock orders a customer's rows; `_refresh` reads while the
        recorder is quiet, so no send is counted twice or missed).
        """
        loop = asyncio.get_running_loop()
        self._unchecked.pop(row.id, None)
        if row.id not in self._checks or loop.time() - self._checked_at > CHECK_MAX_AGE:
            async with self._refreshing:
                if row.id not in self._checks or loop.time() - self._checked_at > CHECK_MAX_AGE:
                    await self._refresh([row, *self._unchecked.values()], now)
        check = self._checks[row.id]
        later = sum(1 for at in self._sent_to.get(row.customer_id, ()) if at >= self._checked_at)
        if later:
            check = replace(check, recent_sends=check.recent_sends + later)
        return check

    async def _refresh(self, rows: list[ClaimedEmail], now: datetime) -> None:
        """Read the facts of the rows still to send again, in one go (the batch ran long)."""
        window = self.sending.frequency_window
        prepared = {row.id: self.prepared[row.id] for row in rows}

        def read() -> dict[int, SendCheck]:
            with self.db.read() as session:
                return outbox.send_checks(session, rows, prepared, now, window)

        async with self._recorder.quiet():  # the sends counted in memory are exactly the later ones
            self._checked_at = since = asyncio.get_running_loop().time()
            self._checks = await asyncio.to_thread(read)
        self._sent_to = defaultdict(
            list, {c: ts for c, t in self._sent_to.items() if (ts := [a for a in t if a >= since])}
        )

    def refusal(self, row: ClaimedEmail, facts: Prepared, check: SendCheck) -> Refusal | None:
        """Why this row must not be sent now, or None."""
        if facts.customer is None or check.status is None:
            return Refusal(Outcome.FAILED, "the customer no longer exists")
        if check.status == CustomerStatus.ARCHIVED.value:
            return Refusal(Outcome.SKIPPED, "archived: the customer is archived")
        if row.is_followup and check.replied:
            return Refusal(Outcome.CANCELLED, "replied: the customer answered the email this follows up")
        if facts.recipient is None:
            return Refusal(Outcome.FAILED, "the customer has no email address")
        if check.suppressed is not None:
            return Refusal(Outcome.SKIPPED, f"suppressed: {facts.recipient} ({check.suppressed})")
        cap = self.sending.frequency_cap
        if cap is not None and check.recent_sends >= cap:
            window = format_duration(self.sending.frequency_window)
            reason = f"frequency_cap: {check.recent_sends} automated emails in the last {window}"
            return Refusal(Outcome.SKIPPED, reason)
        if row.sender is None:
            return Refusal(Outcome.FAILED, "no sender: the rule names none and the customer has no owner")
        return None


def late(row: ClaimedEmail, now: datetime, grace: timedelta) -> Refusal | None:
    """Skip a row too late to send (claimed by a refill, or taken over from a stopped sender)."""
    attempted = ever_attempted(row.attempts, row.deadline_at, row.ambiguous_attempts)
    reason = late_reason(row.due_at, now, grace, attempted=attempted)
    return Refusal(Outcome.SKIPPED, reason) if reason is not None else None
