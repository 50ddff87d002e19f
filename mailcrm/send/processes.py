"""Several sender processes on one machine (`sending.processes`).

One sender is CPU-bound (about 1 ms per email: render, build, SMTP, group commit) and
Python runs it on one core, so with `processes: N` the daemon sends in N processes:
itself (slot 0) and N-1 children it starts and supervises here. A child is
`python -m mailcrm.send.processes --slot I --of N [--config PATH]`: it loads the
settings file, opens its own database connections and runs an ordinary `Sender`.

Nothing new is needed for correctness: the outbox already shares work between
senders (leases; `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite, WAL with every
claim and group commit a `BEGIN IMMEDIATE` transaction under a busy timeout), and the
kill -9 promise holds per open connection, whichever process owns it. How many
processes run, and each one's part of the accounts' limits, is `sharing`'s.

The supervisor restarts a child that
dies (exponential backoff) and stops the children by PID: SIGTERM (each finishes its
SMTP transactions in flight and gives its other claims back), SIGKILL after
`CHILD_STOP_SECONDS`. A child also stops on its own when its parent goes away, so a
killed daemon leaves no sender running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path

from mailcrm import log as logsetup
from mailcrm.domain.backoff import Backoff
from mailcrm.errors import MailcrmError
from mailcrm.send.sharing import MAX_PROCESSES, sender_config
from mailcrm.settings import Settings, load_settings

log = logging.getLogger("mailcrm.send.processes")  # not __name__: a child runs this as __main__

CHILD_STOP_SECONDS = 15.0
"""SIGTERM → SIGKILL: the sender's own stop grace (6 s) plus giving claims back."""
HEALTHY_SECONDS = 60.0
"""A child that ran this long before it died restarts after the shortest delay again."""
PARENT_POLL_SECONDS = 1.0
IDLE_INTERVAL = 5.0
"""Seconds an idle sender waits before it looks for due rows again (`Sender.run`)."""
READY = b"READY"
RESTART = Backoff(base=1.0, cap=60.0)


def _log_options() -> list[str]:
    """The parent's log level and format, so the children's lines look the same."""
    logger = logging.getLogger("mailcrm")
    level = logging.getLevelName(logger.getEffectiveLevel()).lower()
    if level not in ("debug", "info", "warning", "error"):
        level = "warning"
    json_lines = any(isinstance(h.formatter, logsetup.JsonFormatter) for h in logger.handlers)
    return ["--log-level", level, "--log-format", "json" if json_lines else "text"]


class SenderProcesses:
    """Starts senders 1..count-1 as child processes and keeps them running until stop."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        *,
        stop_seconds: float = CHILD_STOP_SECONDS,
        restart: Backoff = RESTART,
        interval: float = IDLE_INTERVAL,
    ) -> None:
        self.settings = settings
        self.count = count
        self.stop_seconds = stop_seconds
        self.restart = restart
        self.interval = interval
        self.restarts = 0
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._changed = asyncio.Condition()
        self._rng = random.Random()

    @property
    def pids(self) -> list[int]:
        """PIDs of the children running now."""
        return [p.pid for p in self._children.values() if p.returncode is None]

    def peak_rss_mb(self) -> float:
        """The children's peak RSS summed (Linux `VmHWM`; 0 where unknown)."""
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        return total

    async def ready(self) -> None:
        """Wait until every child has built its sender and is looking for due rows."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._ready) >= self.count - 1)

    def command(self, slot: int) -> list[str]:
        """The command line of child `slot`."""
        command = [
            sys.executable,
            "-m",
            "mailcrm.send.processes",
            "--slot",
            str(slot),
            "--of",
            str(self.count),
        ]
        command += ["--parent", str(os.getpid()), "--interval", str(self.interval), *_log_options()]
        if self.settings.source is not None:
            command += ["--config", str(self.settings.source)]
        return command

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise the children until `stop`; then stop each by PID and wait for it."""
        tasks = [
            asyncio.create_task(self._supervise(slot, stop), name=f"sender process {slot}")
            for slot in range(1, self.count)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for process in list(self._children.values()):  # cancelled mid-stop: no orphans
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
            self._children.clear()

    async def _supervise(self, slot: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            started = loop.time()
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command(slot), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
                )
            except OSError as exc:
                code: int | str = f"could not start: {exc}"
            else:
                self._children[slot] = process
                log.info(
                    "sender process %s started (pid %s)",
                    slot,
                    process.pid,
                    extra={"action": "send_process_started", "slot": slot, "pid": process.pid},
                )
                reader = asyncio.create_task(self._read(slot, process))
                try:
                    if await _first(process.wait(), stop.wait()) == 1:
                        await self._stop(slot, process)
                        return
                finally:
                    if process.returncode is None:  # cancelled: never leave it behind
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(process.pid, signal.SIGKILL)
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
                    async with self._changed:
                        self._ready.discard(slot)
                code = process.returncode if process.returncode is not None else "unknown"
                del self._children[slot]
            failures = 1 if loop.time() - started >= HEALTHY_SECONDS else failures + 1
            delay = self.restart.delay(failures, self._rng)
            self.restarts += 1
            log.error(
                "sender process %s exited (%s); restarting in %.1f s",
                slot,
                code,
                delay,
                extra={"action": "send_process_died", "slot": slot, "code": code, "delay": delay},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _read(self, slot: int, process: asyncio.subprocess.Process) -> None:
        """The child says READY on stdout once its sender is built; the rest is drained."""
        assert process.stdout is not None
        while line := await process.stdout.readline():
            if line.strip() == READY:
                log.info(
                    "sender process %s is ready (pid %s)",
                    slot,
                    process.pid,
                    extra={"action": "send_process_ready", "slot": slot, "pid": process.pid},
                )
                async with self._changed:
                    self._ready.add(slot)
                    self._changed.notify_all()

    async def _stop(self, slot: int, process: asyncio.subprocess.Process) -> None:
        """SIGTERM; SIGKILL if it is still there after `stop_seconds`."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=self.stop_seconds)
        except TimeoutError:
            log.error(
                "sender process %s (pid %s) did not stop within %.0f s; killed",
                slot,
                process.pid,
                self.stop_seconds,
                extra={"action": "send_process_killed", "slot": slot, "pid": process.pid},
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            code = await process.wait()
        log.info(
            "sender process %s stopped (pid %s, exit %s)",
            slot,
            process.pid,
            code,
            extra={"action": "send_process_stopped", "slot": slot, "pid": process.pid, "code": code},
        )


async def _first(*awaitables: Awaitable[object]) -> int:
    """Index of the first of `awaitables` to finish; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(i for i, task in enumerate(tasks) if task in done)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the child --------------------------------------------------------------------------


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when the daemon that started us is gone (we were re-parented)."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning(
                "the daemon (pid %s) is gone; stopping",
                parent,
                extra={"action": "send_process_orphaned", "parent": parent},
            )
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PARENT_POLL_SECONDS)


async def serve(
    settings: Settings, slot: int, count: int, parent: int | None = None, interval: float = IDLE_INTERVAL
) -> None:
    """Run sender `slot` of `count` until SIGTERM/SIGINT (or the parent goes away)."""
    from mailcrm.render import TemplateRenderer
    from mailcrm.send.worker import Sender
    from mailcrm.store.db import Database, normalize_url

    db = Database(normalize_url(settings.database_url(), settings.base_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent, stop)) if parent is not None else None
    try:
        sender = Sender(db, sender_config(settings, slot, count), TemplateRenderer(settings.templates_path()))
        with contextlib.suppress(OSError):  # nobody listening: the parent's watch stops us
            sys.stdout.buffer.write(READY + b"\n")
            sys.stdout.flush()
        await sender.run(stop, interval=interval)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        db.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of a child sender process (started by `SenderProcesses`)."""
    parser = argparse.ArgumentParser(prog="python -m mailcrm.send.processes", description=__doc__)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--of", type=int, required=True, dest="count")
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--interval", type=float, default=IDLE_INTERVAL)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    if not 1 <= args.slot < args.count <= MAX_PROCESSES:
        parser.error("--slot must be between 1 and --of - 1")
    logsetup.configure(args.log_level, args.log_format)
    try:
        settings = load_settings(args.config)
        asyncio.run(serve(settings, args.slot, args.count, args.parent, args.interval))
    except MailcrmError as exc:
        sys.stderr.write(f"mailcrm sender process {args.slot}: {exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
