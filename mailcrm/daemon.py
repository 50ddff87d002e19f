"""The composition root of `mailcrm run`: settings → database → mailbox workers; signals.

SIGTERM and Ctrl-C set one stop event; every worker finishes the batch it is storing
(the cursor only moves with committed data) and closes its connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

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
    try:
        await stop.wait()
        log.info("stopping", extra={"action": "daemon_stopping"})
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("daemon stopped", extra={"action": "daemon_stopped"})
    return mailbox_workers
