"""What changed among known messages since a HIGHESTMODSEQ: flags (CONDSTORE, RFC 7162)
and, with QRESYNC enabled, the UIDs expunged meanwhile (``VANISHED``): ``UID FETCH ...
(CHANGEDSINCE n [VANISHED])`` on the selected folder."""

from __future__ import annotations

import logging

from mailcrm.imap.connection import Connection
from mailcrm.imap.errors import ImapProtocolError
from mailcrm.imap.parse import FlagUpdate, FolderChanges, flag_updates, unread_vanished, vanished_uids
from mailcrm.imap.protocol import _FetchCommand

log = logging.getLogger(__name__)

# Longest part of an unreadable server line quoted in a log message.
_QUOTED = 200


async def flag_changes(conn: Connection, since_modseq: int) -> list[FlagUpdate]:
    """Flags of messages whose MODSEQ is above ``since_modseq`` (needs CONDSTORE)."""
    if not conn.has_condstore:
        raise ImapProtocolError(
            f"IMAP server {conn.host} does not support CONDSTORE (CHANGEDSINCE)",
            command="UID FETCH",
        )
    conn.require_selected("UID FETCH")
    changed = f"(CHANGEDSINCE {int(since_modseq)})"
    reply = await conn.run(
        "UID FETCH (CHANGEDSINCE)",
        lambda: _FetchCommand(conn.tag(), "1:*", "(UID FLAGS)", changed, prefix="UID", loop=conn.loop),
    )
    conn.condstore_enabled = True
    return flag_updates(reply.lines)


async def changes_since(conn: Connection, since_modseq: int, last_uid: int) -> FolderChanges:
    """Flag changes of UIDs 1..``last_uid`` above ``since_modseq`` in one round trip
    (``UID FETCH ... (FLAGS) (CHANGEDSINCE n)``), plus the UIDs expunged since then
    (``VANISHED``) when QRESYNC is enabled. Needs CONDSTORE."""
    if not conn.has_condstore:
        raise ImapProtocolError(
            f"IMAP server {conn.host} does not support CONDSTORE (CHANGEDSINCE)",
            command="UID FETCH",
        )
    if last_uid < 1:
        return FolderChanges([], [] if conn.qresync_enabled else None)
    folder = conn.require_selected("UID FETCH")
    modifiers = f"(CHANGEDSINCE {int(since_modseq)}{' VANISHED' if conn.qresync_enabled else ''})"
    reply = await conn.run(
        "UID FETCH (CHANGEDSINCE)",
        lambda: _FetchCommand(
            conn.tag(), f"1:{last_uid}", "(UID FLAGS)", modifiers, prefix="UID", loop=conn.loop
        ),
    )
    updates = [update for update in flag_updates(reply.lines) if update.uid <= last_uid]
    if not conn.qresync_enabled:
        return FolderChanges(updates, None)
    if unread := unread_vanished(reply.lines):
        _warn_unread_vanished(conn, folder, unread)
        return FolderChanges(updates, None)  # the caller compares UIDs, as without QRESYNC
    return FolderChanges(updates, vanished_uids(reply.lines))


def _warn_unread_vanished(conn: Connection, folder: str, lines: list[bytes]) -> None:
    """Such a line cannot say which UIDs went: say so, once per reply; the expunges
    are then found by comparing UIDs (as on a server without QRESYNC)."""
    raw = lines[0].decode("utf-8", "replace")
    if len(raw) > _QUOTED:
        raw = raw[:_QUOTED] + "..."
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    log.warning(
        "IMAP server %s sent a VANISHED response that cannot be read (RFC 7162 allows no '*' "
        "in it) for folder %s of %s; expunges are found by comparing UIDs instead: %s%s",
        conn.host,
        folder,
        conn.account.username,
        raw,
        more,
        extra={"action": "imap_vanished_unreadable", "host": conn.host, "user": conn.account.username,
               "folder": folder},
    )  # fmt: skip
