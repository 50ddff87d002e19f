"""Reading messages of the selected folder: UID searches, then bodies in bounded batches.

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


class Fetching(Connection):
    """UID SEARCH and UID FETCH (``BODY.PEEK[]``, so ``\\Seen`` is never set by syncing)."""

    async def uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= ``first_uid`` in the selected folder, ascending.

        ``UID SEARCH UID n:*`` always matches the highest UID, even when it is below n.
        """
        first = max(1, first_uid)
        self._require_selected("UID SEARCH")
        reply = await self._run(
            "UID SEARCH",
            lambda: Command("SEARCH", self._tag(), "UID", f"{first}:*", prefix="UID", loop=self._loop),
        )
        return sorted({uid for uid in parse_search(reply.lines) if uid >= first})

    async def uids_upto(self, last_uid: int) -> list[int]:
        """UIDs <= ``last_uid`` still in the selected folder, ascending (expunge detection
        without QRESYNC). One SEARCH response: the parser handles megabytes of UIDs."""
        if last_uid < 1:
            return []
        self._require_selected("UID SEARCH")
        reply = await self._run(
            "UID SEARCH",
            lambda: Command("SEARCH", self._tag(), "UID", f"1:{last_uid}", prefix="UID", loop=self._loop),
        )
        return sorted({uid for uid in parse_search(reply.lines) if uid <= last_uid})

    async def fetch(
        self,
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
        folder = self._require_selected("UID FETCH")
        for start in range(0, len(wanted), SIZE_QUERY_CHUNK):
            chunk = wanted[start : start + SIZE_QUERY_CHUNK]
            sizes = await self._sizes(chunk, folder)
            batch: list[int] = []
            total = 0
            for uid in chunk:
                size = sizes.get(uid)
                if size is None:
                    continue
                if batch and (len(batch) >= max_count or total + size > max_bytes):
                    if messages := await self._bodies(batch, folder):
                        yield messages
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch and (messages := await self._bodies(batch, folder)):
                yield messages

    async def _sizes(self, uids: Sequence[int], folder: str) -> dict[int, int]:
        self._require_folder(folder)
        uid_set = uid_set_text(uids)
        reply = await self._run(
            "UID FETCH (RFC822.SIZE)",
            lambda: _FetchCommand(self._tag(), uid_set, "(UID RFC822.SIZE)", prefix="UID", loop=self._loop),
        )
        return fetched_sizes(reply.lines, uids)

    async def _bodies(self, uids: Sequence[int], folder: str) -> list[FetchedMessage]:
        self._require_folder(folder)
        uid_set = uid_set_text(uids)
        items = "UID RFC822.SIZE INTERNALDATE FLAGS"
        if self._condstore_enabled:
            items += " MODSEQ"
        items = f"({items} BODY.PEEK[])"
        reply = await self._run(
            "UID FETCH (BODY.PEEK[])",
            lambda: _FetchCommand(self._tag(), uid_set, items, prefix="UID", loop=self._loop),
        )
        return fetched_messages(reply.lines, uids)
