"""`mailcrm demo --serve`: the daemon of `mailcrm run` on the demo's own mail servers.

After the one-shot demo the IMAP and SMTP servers keep running and `daemon.run` (the
very function behind `mailcrm run`) syncs, plans and sends against them until Ctrl-C or
SIGTERM. A new user can then deliver a message into a demo mailbox and watch the daemon
put it on the customer's timeline: the product working, with nothing set up.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from mailcrm import daemon
from mailcrm.demo import seed
from mailcrm.settings import Settings
from mailcrm.store import overview
from mailcrm.store.db import Database
from mailcrm.sync.supervisor import MailboxWorker

if TYPE_CHECKING:
    from mailcrm.demo.imap_server import DemoImapServer
    from mailcrm.demo.smtp_server import DemoSmtpServer

SUBJECT = "Question about my order"
BODY = "Hello, could you call me tomorrow about my order? Thanks!"
_SHELL_SAFE = re.compile(r"[A-Za-z0-9._@+-]+")  # fits in the printed command without escaping


@dataclass(frozen=True)
class Example:
    """Who the printed command writes as, and into whose INBOX."""

    customer_id: int
    name: str
    address: str
    mailbox: str


def example(session: Session, settings: Settings, customer_id: int | None) -> Example | None:
    """The customer on show (else the first one) writing to their salesperson (else the first
    salesperson with a mailbox); None when the demo has neither."""
    mailboxes = [person.email for person in settings.salespeople if person.imap is not None]
    for found_id, name, address, owner in overview.contacts(session, first=customer_id):
        mailbox = owner if owner in mailboxes else (mailboxes[0] if mailboxes else None)
        if mailbox and _SHELL_SAFE.fullmatch(address):
            return Example(found_id, name, address, mailbox)
    return None


def deliver_command(host: str, port: int, username: str, password: str, sender: str) -> str:
    """A shell line (Python's standard library only) that APPENDs a new email from `sender` to
    the INBOX of `username`, as a mail server delivering it would."""
    for value in (host, username, password, sender):
        if not _SHELL_SAFE.fullmatch(value):
            raise ValueError(f"not safe to print in a command: {value!r}")
    message = rf"From: {sender}\r\nTo: {username}\r\nSubject: {SUBJECT}\r\n\r\n{BODY}\r\n"
    program = (
        f'import imaplib; c = imaplib.IMAP4("{host}", {port}); c.login("{username}", "{password}"); '
        f'c.append("INBOX", None, None, b"{message}"); c.logout()'
    )
    return "python3 -c " + shlex.quote(program)


def details(
    imap: DemoImapServer, smtp: DemoSmtpServer, settings: Settings, config: Path, shown: Example | None
) -> dict[str, Any]:
    """The `serving` section of the demo's JSON: where the servers listen, the logins, and
    the commands of the printed walk-through."""
    logins = [
        {"username": person.imap.username, "password": imap.login(person.imap.username)}
        for person in settings.salespeople
        if person.imap is not None
    ]
    config_arg = shlex.quote(str(config))
    walkthrough: dict[str, Any] | None = None
    if shown is not None:
        walkthrough = {
            "customer_id": shown.customer_id,
            "from": shown.address,
            "mailbox": shown.mailbox,
            "subject": SUBJECT,
            "deliver": deliver_command(
                imap.host, imap.port, shown.mailbox, imap.login(shown.mailbox), shown.address
            ),
            "timeline": f"mailcrm --config {config_arg} timeline {shown.address}",
        }
    return {
        "imap": {"host": imap.host, "port": imap.port, "security": "plain", "logins": logins},
        "smtp": {"host": smtp.host, "port": smtp.port, "captured": str(smtp.directory)},
        "example": walkthrough,
    }


async def run(
    db: Database,
    settings: Settings,
    imap: DemoImapServer,
    smtp: DemoSmtpServer,
    announce: Callable[[], None],
) -> list[MailboxWorker]:
    """Call `announce`, run the daemon until SIGINT/SIGTERM, then stop the servers.

    The daemon stops first, so the batches it is storing or sending finish against live
    servers; the signal handlers go in before `announce`, so a Ctrl-C right after the
    "serving" line is a clean stop too, and stay for the servers' stop, so a second Ctrl-C
    does not cut it short.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not on this platform: Ctrl-C interrupts
            pass
    try:
        with seed.login_env(imap, settings):
            announce()
            finished = await daemon.run(db, settings, stop=stop)
        for signum in installed:  # daemon.run removed its handlers (the same stop.set) on return
            loop.add_signal_handler(signum, stop.set)
        await smtp.stop()
        await imap.stop()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return finished
