"""The planning schedule stops cleanly: a pass in progress finishes, nothing is cut or left behind."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from mailcrm.schedule import PlanningSchedule


async def test_stop_waits_for_the_pass_in_progress() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(10)
        finished.set()

    schedule = PlanningSchedule(job, interval=3600)
    schedule.start()
    assert await asyncio.to_thread(started.wait, 10), "the first pass runs at start"
    stopping = asyncio.create_task(schedule.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop returned while the pass was still writing"
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished.is_set()


async def test_stop_right_after_start_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    caplog.set_level(logging.INFO)
    schedule = PlanningSchedule(lambda: runs.append(1), interval=3600)
    schedule.start()
    await schedule.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert len(runs) <= 1


async def test_a_failing_pass_is_logged_and_the_next_tick_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    second = threading.Event()

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database unavailable")
        second.set()

    schedule = PlanningSchedule(job, interval=0.2)
    schedule.start()
    try:
        assert await asyncio.to_thread(second.wait, 10)
    finally:
        await schedule.stop()
    assert any("planning failed" in r.getMessage() for r in caplog.records)
