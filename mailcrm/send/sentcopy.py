"""The optional copy of each sent email in the salesperson's Sent folder (`sending.copy_to_sent`).

Off by default: Gmail and Office 365 file submitted mail in Sent themselves, and a
second copy would be a duplicate there. Where one team mixes such providers with
others, `copy_to_sent` stays on and each such IMAP account says
`server_files_sent: true`: its copies are skipped, and the sync still links the
server's copy to the sent message by its Message-ID. Copies run in the background, one IMAP
connection per salesperson, so they never slow sending down; a failed copy is
logged and never changes the send's outcome. After a failure that mailbox's copies
pause for `PAUSE_SECONDS` (no reconnect storm against a broken account).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mailcrm import wiring
from mailcrm.errors import MailcrmError
from mailcrm.imap.client import ImapClient
from mailcrm.settings import SalespersonSettings

log = logging.getLogger(__name__)

COPY_TIMEOUT = 60.0
PAUSE_SECONDS = 60.0
CLOSE_WAIT = 1.5


class SentCopier:
    """Appends sent messages to Sent folders in background tasks."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[ImapClient, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._paused_until: dict[str, float] = {}
        self._tasks: set[asyncio.Task[bool]] = set()
        self._server_files: set[str] = set()  # salespeople told about `server_files_sent`

    def schedule(self, person: SalespersonSettings, raw: bytes, message_id: str) -> None:
        """Copy in the background; returns at once."""
        task = asyncio.create_task(self.copy(person, raw, message_id), name=f"sent copy {message_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def copy(self, person: SalespersonSettings, raw: bytes, message_id: str) -> bool:
        """APPEND `raw` to the person's Sent folder; False (and a log line) when it was not copied."""
        extra = {"action": "sent_copy_failed", "salesperson": person.email, "message_id": message_id}
        if person.imap is None:
            log.debug("no IMAP account: no Sent copy", extra={**extra, "action": "sent_copy_skipped"})
            return False
        if person.imap.server_files_sent:
            if person.email not in self._server_files:  # once per salesperson, not per message
                self._server_files.add(person.email)
                log.debug(
                    "no Sent copies for %s: server_files_sent says its provider files them itself",
                    person.email,
                    extra={**extra, "action": "sent_copy_skipped"},
                )
            return False
        if self._paused_until.get(person.email, 0.0) > time.monotonic():
            log.warning("Sent copies of %s are paused after an error; %s not copied", person.email,
                        message_id, extra=extra)  # fmt: skip
            return False
        lock = self._locks.setdefault(person.email, asyncio.Lock())
        async with lock:
            try:
                async with asyncio.timeout(COPY_TIMEOUT):
                    client, folder = await self._client(person)
                    await client.append(folder, raw)
                return True
            except (MailcrmError, OSError, TimeoutError) as exc:
                await self._drop(person.email)
                self._paused_until[person.email] = time.monotonic() + PAUSE_SECONDS
                log.warning("could not copy %s to the Sent folder of %s: %s", message_id, person.email, exc,
                            extra=extra)  # fmt: skip
                return False

    async def _client(self, person: SalespersonSettings) -> tuple[ImapClient, str]:
        known = self._clients.get(person.email)
        if known is not None:
            return known
        assert person.imap is not None
        client = await ImapClient.connect(wiring.imap_params(person.imap))
        folder = await client.sent_folder()
        if folder is None:
            await client.close()
            raise MailcrmError(f"no Sent folder found in the mailbox of {person.email}")
        self._clients[person.email] = (client, folder)
        return client, folder

    async def _drop(self, email: str) -> None:
        known = self._clients.pop(email, None)
        if known is not None:
            await known[0].close()

    async def close(self, wait: float = CLOSE_WAIT) -> None:
        """Let pending copies finish for up to `wait` seconds, then close the connections."""
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=wait)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for email in list(self._clients):
            await self._drop(email)
