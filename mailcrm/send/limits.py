"""How fast an account may send: its rolling daily cap and its per-minute rate slot."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from mailcrm.errors import MailcrmError
from mailcrm.smtp.pool import SmtpPool
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.outbox import ClaimedEmail

log = logging.getLogger(__name__)

DAILY_WINDOW = timedelta(hours=24)


class Stopped(MailcrmError):
    """Stop was requested before the row's SMTP transaction began (the lane gives the row back)."""

    def __init__(self) -> None:
        super().__init__("stop was requested before the SMTP transaction began")


class DailyCap:
    """Reservations of each account's `per_day` emails (rolling 24 h) held by this process's lanes."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self._now = now
        self._reserved: dict[str, set[int]] = defaultdict(set)  # sender → rows holding a slot
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def reserve(self, row: ClaimedEmail, pool: SmtpPool, now: datetime) -> bool:
        """Reserve one of the account's `per_day` emails for the row, or defer it.

        True: deferred. False: the row may go; with a cap it holds a reservation,
        given back by `release` once its outcome is recorded. The check and the
        reservation happen under one lock per account, and the count leaves out the
        rows this process holds in memory (reserved: counted there), so concurrent
        lanes of a process never pass the cap together. Other processes' rows count
        from the database once started; `sharing.share` covers the rest.
        """
        per_day = pool.account.per_day
        if per_day is None or row.sender is None:
            return False
        reserved = self._reserved[row.sender]
        async with self._locks[row.sender]:
            held = set(reserved)  # released meanwhile: still counted (sent, or rarely a retry)
            count, oldest = await asyncio.to_thread(
                partial(outbox.sent_since, self.db, row.sender, now - DAILY_WINDOW, exclude=held)
            )
            if count + len(held) < per_day:
                reserved.add(row.id)
                return False
        until = (oldest or now) + DAILY_WINDOW
        await asyncio.to_thread(outbox.defer, self.db, row, until, now=self._now())
        log.info(
            "daily cap of %s reached for %s; outbox row %s waits until %s",
            per_day,
            row.sender,
            row.id,
            until.isoformat(),
            extra={"action": "send_deferred", "outbox_id": row.id, "sender": row.sender},
        )
        return True

    def release(self, row: ClaimedEmail) -> None:
        """Give back the row's reservation: its outcome is in the database or queued to
        it (a queued `sent` is a started row, which `sent_since` counts)."""
        if row.sender is not None:
            self._reserved[row.sender].discard(row.id)


async def rate_slot(pool: SmtpPool, stop: asyncio.Event) -> None:
    """Wait for the account's next per-minute slot; `Stopped` if stop comes first."""
    delay = pool.limiter.reserve()
    if delay > 0 and await wait(stop, delay):
        raise Stopped
    if stop.is_set():
        raise Stopped


async def wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        return False
    return True
