"""APScheduler wiring only: it fires "plan now" ticks; the business calendar lives in the core.

All APScheduler imports stay in this module so a move to another scheduler is a
one-file change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)


class PlanningSchedule:
    """Runs `job` (blocking; run in a worker thread) now and then every `interval` seconds."""

    def __init__(self, job: Callable[[], object], interval: float) -> None:
        self._job = job
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=interval,
            next_run_time=datetime.now(UTC),
            id="plan",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(int(interval), 1),
        )

    async def _tick(self) -> None:
        try:
            await asyncio.to_thread(self._job)
        except asyncio.CancelledError:
            # Shutting down: the pass finishes (or rolls back) in its thread; the outbox's
            # unique key makes the next pass, after a restart, pick up where it stopped.
            log.info("planning pass interrupted by shutdown", extra={"action": "plan_interrupted"})
        except Exception:  # the next tick tries again; the daemon keeps running
            log.exception("planning failed", extra={"action": "plan_failed"})

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
