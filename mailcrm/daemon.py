"""The composition root of `mailcrm run`: settings → database → mailbox workers, the
planner (APScheduler ticks) and the sender; signals.

With `sending.processes` above 1 this process is one sender and supervises the
others as child processes (`mailcrm.send.processes`): one sender is CPU-bound.

SIGTERM and Ctrl-C set one stop event: every mailbox worker finishes the batch it is
storing (the cursor only moves with committed data), the sender finishes the SMTP
transactions in flight and gives every other claim back, and connections are closed;
child senders get SIGTERM by PID and are waited for (SIGKILL after 15 s).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from mailcrm import planner
from mailcrm.render import TemplateRenderer
from mailcrm.rules_yaml import RuleWatcher
from mailcrm.schedule import PlanningSchedule
from mailcrm.send import processes, sharing
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store.db import Database
from mailcrm.sync.supervisor import MailboxWorker, workers

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 20.0


async def run(
    db: Database,
    settings: Settings,
    *,
    only: Sequence[str] = (),
    stop: asyncio.Event | None = None,
    plan_and_send: bool = True,
) -> list[MailboxWorker]:
    """Run until SIGTERM/SIGINT (or `stop` is set); returns the workers for a final report."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass
    mailbox_workers = await asyncio.to_thread(workers, db, settings, only)
    if not mailbox_workers:
        log.warning("no salesperson has an IMAP mailbox configured; nothing to sync")
    log.info(
        "daemon started",
        extra={"action": "daemon_started", "mailboxes": [w.person.email for w in mailbox_workers]},
    )
    tasks = [asyncio.create_task(w.run(stop), name=f"mailbox {w.person.email}") for w in mailbox_workers]
    schedule = None
    if plan_and_send:
        schedule = PlanningSchedule(_planning_job(db, settings), settings.planning.interval_seconds)
        schedule.start()
        count = sharing.resolve(settings)
        renderer = TemplateRenderer(settings.templates_path())
        sender = Sender(db, sharing.sender_config(settings, 0, count), renderer)
        tasks.append(asyncio.create_task(sender.run(stop), name="sender"))
        if count > 1:  # this process is sender 0; the others are children it supervises
            children = processes.SenderProcesses(settings, count)
            tasks.append(asyncio.create_task(children.run(stop), name="sender processes"))
    try:
        await stop.wait()
        log.info("stopping", extra={"action": "daemon_stopping"})
        if schedule is not None:
            await schedule.stop()
            schedule = None
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if schedule is not None:
            await schedule.stop()
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("daemon stopped", extra={"action": "daemon_stopped"})
    return mailbox_workers


def _planning_job(db: Database, settings: Settings) -> Callable[[], None]:
    """A planning pass on the current rules; a broken rule edit keeps the last good set.

    The watcher logs each reload that finds a broken file, and the one that finds it fixed.
    """
    watcher = RuleWatcher(settings.rules_path(), lambda _directory: planner.configured_rules(settings))

    def job() -> None:
        rules, _error = watcher.reload_if_changed()
        planner.plan(db, settings, rules)

    return job
