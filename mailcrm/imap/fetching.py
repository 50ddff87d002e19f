"""Reading messages of the selected folder: UID searches, then bodies in bounded batches.

UID SEARCH and UID FETCH (``BODY.PEEK[]``, so ``\\Seen`` is never set by syncing).

Sizes are asked for first (``RFC822.SIZE``, in chunks) so every body batch stays under a
byte budget; a message expunged between the two steps is skipped, never an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aioimaplib.aioimaplib import Command

from mailcrm.imap.connection import Connection
from mailcrm.imap.parse import FetchedMessage, fetched_messages, fetched_sizes, parse_search, uid_set_text
from mailcrm.imap.protocol import _FetchCommand

DEFAULT_BATCH_COUNT = 200
# UIDs per RFC822.SIZE query: keeps each response to a few hundred short lines.
SIZE_QUERY_CHUNK = 500


async def uids_from(conn: Connection, first_uid: int) -> list[int]:
    """UIDs >= ``first_uid`` in the selected folder, ascending.

    ``UID SEARCH UID n:*`` always matches the highest UID, even when it is below n.
    """
    first = max(1, first_uid)
    conn.require_selected("UID SEARCH")
    reply = await conn.run(
        "UID SEARCH",
        lambda: Command("SEARCH", conn.tag(), "UID", f"{first}:*", prefix="UID", loop=conn.loop),
    )
    return sorted({uid for uid in parse_search(reply.lines) if uid >= first})


async def uids_upto(conn: Connection, last_uid: int) -> list[int]:
    """UIDs <= ``last_uid`` still in the selected folder, ascending (expunge detection
    without QRESYNC). One SEARCH response: the parser handles megabytes of UIDs."""
    if last_uid < 1:
        return []
    conn.require_selected("UID SEARCH")
    reply = await conn.run(
        "UID SEARCH",
        lambda: Command("SEARCH", conn.tag(), "UID", f"1:{last_uid}", prefix="UID", loop=conn.loop),
    )
    return sorted({uid for uid in parse_search(reply.lines) if uid <= last_uid})


async def fetch(
    conn: Connection,
    uids: Sequence[int],
    *,
    max_bytes: int = 16 * 2**20,
    max_count: int = DEFAULT_BATCH_COUNT,
) -> AsyncIterator[list[FetchedMessage]]:
    """Messages of the selected folder in UID order, in batches of at most ``max_count``
    messages and ``max_bytes`` bytes (a bigger message comes alone). ``BODY.PEEK[]``
    keeps ``\\Seen`` untouched; messages expunged meanwhile are skipped."""
    if max_bytes <= 0 or max_count <= 0:
        raise ValueError("max_bytes and max_count must be positive")
    wanted = sorted(set(uids))
    folder = conn.require_selected("UID FETCH")
    for start in range(0, len(wanted), SIZE_QUERY_CHUNK):
        chunk = wanted[start : start + SIZE_QUERY_CHUNK]
        sizes = await _sizes(conn, chunk, folder)
        batch: list[int] = []
        total = 0
        for uid in chunk:
            size = sizes.get(uid)
            if size is None:
                continue
            if batch and (len(batch) >= max_count or total + size > max_bytes):
                if messages := await _bodies(conn, batch, folder):
                    yield messages
                batch, total = [], 0
            batch.append(uid)
            total += size
        if batch and (messages := await _bodies(conn, batch, folder)):
            yield messages


async def _sizes(conn: Connection, uids: Sequence[int], folder: str) -> dict[int, int]:
    conn.require_folder(folder)
    uid_set = uid_set_text(uids)
    reply = await conn.run(
        "UID FETCH (RFC822.SIZE)",
        lambda: _FetchCommand(conn.tag(), uid_set, "(UID RFC822.SIZE)", prefix="UID", loop=conn.loop),
    )
    return fetched_sizes(reply.lines, uids)


async def _bodies(conn: Connection, uids: Sequence[int], folder: str) -> list[FetchedMessage]:
    conn.require_folder(folder)
    uid_set = uid_set_text(uids)
    items = "UID RFC822.SIZE INTERNALDATE FLAGS"
    if conn.condstore_enabled:
        items += " MODSEQ"
    items = f"({items} BODY.PEEK[])"
    reply = await conn.run(
        "UID FETCH (BODY.PEEK[])",
        lambda: _FetchCommand(conn.tag(), uid_set, items, prefix="UID", loop=conn.loop),
    )
    return fetched_messages(reply.lines, uids)
