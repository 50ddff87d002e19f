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
    """Runs `job` (blocking; run in a worker thread) now and then every `interval` seconds.

    Each tick only starts a planning pass as a task of our own: APScheduler cancels the
    jobs it still holds when it shuts down, and a pass must never be cut off half-way
    nor left running in its thread after the daemon has returned. `stop()` waits for it.
    """

    def __init__(self, job: Callable[[], object], interval: float) -> None:
        self._job = job
        self._passes: set[asyncio.Task[None]] = set()
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
        if any(not task.done() for task in self._passes):
            log.info("planning pass still running; this tick is skipped", extra={"action": "plan_skipped"})
            return
        task = asyncio.get_running_loop().create_task(self._pass(), name="planning pass")
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)

    async def _pass(self) -> None:
        try:
            await asyncio.to_thread(self._job)
        except Exception:  # the next tick tries again; the daemon keeps running
            log.exception("planning failed", extra={"action": "plan_failed"})

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        """No new ticks; a tick already handed to the event loop starts its pass, which is awaited.

        The outbox's unique key makes a pass safe to repeat, but waiting keeps the stop
        clean: no thread writes to the database after the daemon says it has stopped.
        """
        if self._scheduler.running:
            self._scheduler.pause()
            await asyncio.sleep(0)  # let a submitted tick run its only step
            self._scheduler.shutdown(wait=False)
        if self._passes:
            log.info("waiting for the planning pass to finish", extra={"action": "plan_wait"})
            await asyncio.gather(*self._passes, return_exceptions=True)
