"""Storing a message in a folder (APPEND), e.g. the copy of a sent email in Sent, with a
watchdog that allows for the upload time of big messages."""

from __future__ import annotations

from collections.abc import Sequence

from mailcrm.imap.connection import Connection
from mailcrm.imap.parse import mailbox_arg, parse_appenduid, response_code

# Slowest upload rate an APPEND is allowed before its watchdog fires (bytes per second).
APPEND_MIN_RATE = 32 * 1024
_FLAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789$_.-+/:!#&'^`|~")


async def append(conn: Connection, folder: str, raw: bytes, flags: Sequence[str] = ("\\Seen",)) -> int | None:
    """Store ``raw`` in ``folder``; the new UID when the server reports APPENDUID (UIDPLUS)."""
    for flag in flags:
        if not flag or not set(flag.removeprefix("\\")) <= _FLAG_CHARS:
            raise ValueError(f"invalid IMAP flag {flag!r}")
    flag_list = f"({' '.join(flags)})" if flags else None
    bound = conn.timeout + len(raw) / APPEND_MIN_RATE
    reply = await conn.run(
        f"APPEND {folder}",
        lambda: conn.protocol.append(bytes(raw), mailbox=mailbox_arg(folder), flags=flag_list),
        limit=bound,
        expect_ok=False,
    )
    if reply.result != "OK":
        hint = None
        if response_code(reply.text) == "TRYCREATE":
            hint = f"the folder {folder!r} does not exist on {conn.host}"
        conn.expect_ok(reply, f"APPEND {folder}", hint=hint)
    appended = parse_appenduid(reply.text)
    return appended[1] if appended else None
