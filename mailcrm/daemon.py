"""The composition root of `mailcrm run`: settings → database → mailbox workers, the
planner (APScheduler ticks) and the sender; signals.

With `sending.processes` above 1 this process is one sender and supervises the
others as child processes (`mailcrm.send.processes`): one sender is CPU-bound.

The web endpoint (`mailcrm.web`): with `web.base_url` set, the sender's emails carry
its signed unsubscribe link (the `Sender` hook); with `web.enabled`, this process also
serves the app on `web.host:web.port`. Either needs the signing key, read (and the port
bound) before anything starts, so a missing key or a busy port stops the start with
one line naming the setting.

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

from mailcrm import planner, wiring
from mailcrm.oauth import TokenProvider
from mailcrm.render import TemplateRenderer
from mailcrm.rules_yaml import RuleWatcher
from mailcrm.schedule import PlanningSchedule
from mailcrm.send import processes, sharing
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store.db import Database
from mailcrm.sync.supervisor import MailboxWorker, workers
from mailcrm.web import endpoint

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
    web = settings.web
    site = endpoint(web, settings.base_dir) if plan_and_send and (web.enabled or web.links) else None
    listening = None
    if site is not None and web.enabled:
        from mailcrm.web import server  # uvicorn and FastAPI are slow to import; only when serving

        listening = server.bind(web.host, web.port)
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        chosen = await asyncio.to_thread(mailbox_workers, db, settings, only)
    except BaseException:
        if listening is not None:
            listening.close()
        raise
    if not chosen:
        log.warning("no salesperson has an IMAP mailbox configured; nothing to sync")
    log.info(
        "daemon started",
        extra={"action": "daemon_started", "mailboxes": [w.mailbox.email for w in chosen]},
    )
    tasks = [asyncio.create_task(w.run(stop), name=f"mailbox {w.mailbox.email}") for w in chosen]
    if site is not None and listening is not None:
        from mailcrm.web import server
        from mailcrm.web.app import create_app

        served = server.config(create_app(web, db, site.keys), web)
        tasks.append(asyncio.create_task(server.serve(served, stop, listening), name="web"))
    schedule = None
    if plan_and_send:
        schedule = PlanningSchedule(_planning_job(db, settings), settings.planning.interval_seconds)
        schedule.start()
        count = sharing.resolve(settings)
        renderer = TemplateRenderer(settings.templates_path())
        hook = site.links.unsubscribe_url if site is not None and site.links is not None else None
        sender = Sender(db, sharing.sender_config(settings, 0, count), renderer, unsubscribe_url=hook)
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
    return chosen


def mailbox_workers(
    db: Database,
    settings: Settings,
    only: Sequence[str] = (),
    token_provider: TokenProvider | None = None,
) -> list[MailboxWorker]:
    """One worker per configured IMAP mailbox (optionally only the named ones), each given
    its mailbox, the team and the `sync:` policy cut from the settings."""
    return workers(
        db,
        wiring.team(settings),
        wiring.mailboxes(settings),
        wiring.sync_policy(settings),
        only,
        token_provider,
    )


def _planning_job(db: Database, settings: Settings) -> Callable[[], None]:
    """A planning pass on the current rules; a broken rule edit keeps the last good set.

    The watcher logs each reload that finds a broken file, and the one that finds it fixed.
    """
    watcher = RuleWatcher(settings.rules_path(), lambda _directory: planner.configured_rules(settings))

    def job() -> None:
        rules, _error = watcher.reload_if_changed()
        planner.plan(db, settings, rules)

    return job
