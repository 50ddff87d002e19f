"""What changed among known messages since a HIGHESTMODSEQ: flags (CONDSTORE, RFC 7162)
and, with QRESYNC enabled, the UIDs expunged meanwhile (``VANISHED``)."""

from __future__ import annotations

from mailcrm.imap.connection import Connection
from mailcrm.imap.errors import ImapProtocolError
from mailcrm.imap.parse import FlagUpdate, FolderChanges, flag_updates, vanished_uids
from mailcrm.imap.protocol import _FetchCommand


class Changes(Connection):
    """``UID FETCH ... (CHANGEDSINCE n [VANISHED])`` on the selected folder."""

    async def flag_changes(self, since_modseq: int) -> list[FlagUpdate]:
        """Flags of messages whose MODSEQ is above ``since_modseq`` (needs CONDSTORE)."""
        if not self.has_condstore:
            raise ImapProtocolError(
                f"IMAP server {self.host} does not support CONDSTORE (CHANGEDSINCE)",
                command="UID FETCH",
            )
        self._require_selected("UID FETCH")
        changed = f"(CHANGEDSINCE {int(since_modseq)})"
        reply = await self._run(
            "UID FETCH (CHANGEDSINCE)",
            lambda: _FetchCommand(self._tag(), "1:*", "(UID FLAGS)", changed, prefix="UID", loop=self._loop),
        )
        self._condstore_enabled = True
        return flag_updates(reply.lines)

    async def changes_since(self, since_modseq: int, last_uid: int) -> FolderChanges:
        """Flag changes of UIDs 1..``last_uid`` above ``since_modseq`` in one round trip
        (``UID FETCH ... (FLAGS) (CHANGEDSINCE n)``), plus the UIDs expunged since then
        (``VANISHED``) when QRESYNC is enabled. Needs CONDSTORE."""
        if not self.has_condstore:
            raise ImapProtocolError(
                f"IMAP server {self.host} does not support CONDSTORE (CHANGEDSINCE)",
                command="UID FETCH",
            )
        if last_uid < 1:
            return FolderChanges([], [] if self._qresync_enabled else None)
        self._require_selected("UID FETCH")
        modifiers = f"(CHANGEDSINCE {int(since_modseq)}{' VANISHED' if self._qresync_enabled else ''})"
        reply = await self._run(
            "UID FETCH (CHANGEDSINCE)",
            lambda: _FetchCommand(
                self._tag(), f"1:{last_uid}", "(UID FLAGS)", modifiers, prefix="UID", loop=self._loop
            ),
        )
        updates = [update for update in flag_updates(reply.lines) if update.uid <= last_uid]
        return FolderChanges(updates, vanished_uids(reply.lines) if self._qresync_enabled else None)
