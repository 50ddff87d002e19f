"""Several sender processes on one machine (`sending.processes`).

One sender is CPU-bound (about 1 ms per email: render, build, SMTP, group commit) and
Python runs it on one core, so with `processes: N` the daemon sends in N processes:
itself (slot 0) and N-1 children it starts and supervises here. A child is
`python -m mailcrm.send.processes --slot I --of N [--config PATH]`: it loads the
settings file, opens its own database connections and runs an ordinary `Sender`.

Nothing new is needed for correctness: the outbox already shares work between
senders (leases; `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite, WAL with every
claim and group commit a `BEGIN IMMEDIATE` transaction under a busy timeout), and the
kill -9 promise holds per open connection, whichever process owns it.

Per SMTP account limits must hold for the machine, not per process, so `share` gives
each process its part of them:

* `max_connections` and `per_minute` are enforced in memory per process: they are
  divided among the processes (the remainder goes to the lowest slots);
* `per_day` counts, in the database, sent rows and rows inside an SMTP transaction
  (attempt started), which every process sees; a process's own rows between its cap
  check and their start are reserved in its memory, invisible to the others (at most
  one per connection), so each process's cap is lowered by the connections the other
  processes hold to that account.

`resolve` lowers N (with a warning) until every account can be shared that way, so a
1-connection account keeps its limits exactly. The supervisor restarts a child that
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
from mailcrm.settings import Settings, SmtpAccount, load_settings

log = logging.getLogger("mailcrm.send.processes")  # not __name__: a child runs this as __main__

MAX_PROCESSES = 64
CHILD_STOP_SECONDS = 15.0
"""SIGTERM → SIGKILL: the sender's own stop grace (6 s) plus giving claims back."""
HEALTHY_SECONDS = 60.0
"""A child that ran this long before it died restarts after the shortest delay again."""
PARENT_POLL_SECONDS = 1.0
IDLE_INTERVAL = 5.0
"""Seconds an idle sender waits before it looks for due rows again (`Sender.run`)."""
READY = b"READY"
RESTART = Backoff(base=1.0, cap=60.0)


def cpu_count() -> int:
    """CPUs this process may run on (affinity and cgroup cpusets included where known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _split(total: int, count: int, slot: int) -> int:
    base, extra = divmod(total, count)
    return base + (1 if slot < extra else 0)


def _shared(account: SmtpAccount, count: int, slot: int) -> SmtpAccount | None:
    """This slot's part of the account's limits; None when it cannot have one."""
    connections = _split(account.max_connections, count, slot)
    if connections < 1:
        return None
    update: dict[str, int] = {"max_connections": connections}
    if account.per_minute is not None:
        update["per_minute"] = _split(account.per_minute, count, slot)
        if update["per_minute"] < 1:
            return None
    if account.per_day is not None:
        update["per_day"] = account.per_day - (account.max_connections - connections)
        if update["per_day"] < 1:
            return None
    return account.model_copy(update=update)


def _limit(settings: Settings, count: int) -> str | None:
    """Why `count` processes cannot share the accounts' limits (None: they can)."""
    for person in settings.salespeople:
        if person.smtp is not None and any(
            _shared(person.smtp, count, slot) is None for slot in range(count)
        ):
            return f"the SMTP account of {person.email} cannot be shared by {count} processes"
    return None


def resolve(settings: Settings) -> int:
    """How many sender processes to run: `sending.processes` (0: one per CPU), lowered
    until every account's limits can be shared (see the module docstring)."""
    sending = settings.sending
    wanted = sending.processes or cpu_count()
    count = min(wanted, MAX_PROCESSES)
    if count <= 1 or not sending.enabled:
        return 1
    url = settings.database_url()
    if url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite:/")):
        log.warning(
            "sending.processes: %s ignored: an in-memory SQLite database is private to one process",
            wanted,
            extra={"action": "send_processes_reduced", "wanted": wanted, "processes": 1},
        )
        return 1
    reason = _limit(settings, count)
    first_reason = reason
    while reason is not None and count > 1:
        count -= 1
        reason = _limit(settings, count) if count > 1 else None
    if count < wanted:
        log.warning(
            "sending.processes: running %s sender processes instead of %s: %s "
            "(max_connections, per_minute and per_day are divided among the processes)",
            count,
            wanted,
            first_reason or "at most " + str(MAX_PROCESSES),
            extra={"action": "send_processes_reduced", "wanted": wanted, "processes": count},
        )
    return count


def share(settings: Settings, slot: int, count: int) -> Settings:
    """The settings sender `slot` of `count` runs with: its part of every account's limits."""
    if count <= 1:
        return settings
    people = []
    for person in settings.salespeople:
        if person.smtp is None:
            people.append(person)
            continue
        account = _shared(person.smtp, count, slot)
        if account is None:  # `resolve` keeps `count` low enough for this not to happen
            raise MailcrmError(
                f"the SMTP account of {person.email} cannot be shared by {count} sender processes",
                hint="lower sending.processes",
            )
        people.append(person.model_copy(update={"smtp": account}))
    return settings.model_copy(update={"salespeople": people})


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
        sender = Sender(db, share(settings, slot, count), TemplateRenderer(settings.templates_path()))
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
