"""Folders: listing them (with special-use roles), finding Sent, and selecting one."""

from __future__ import annotations

from aioimaplib.aioimaplib import AUTH, SELECTED, Command

from mailcrm.imap.connection import Connection
from mailcrm.imap.parse import (
    FolderInfo,
    FolderStatus,
    choose_sent_folder,
    mailbox_arg,
    parse_list,
    parse_select,
)


class Folders(Connection):
    """LIST and SELECT/EXAMINE; UIDs only mean something in the folder selected last."""

    async def list_folders(self) -> list[FolderInfo]:
        """All folders with their attributes (special-use roles included where offered)."""
        args = ['""', '"*"']
        if {"SPECIAL-USE", "LIST-EXTENDED"} <= self.capabilities:
            args += ["RETURN", "(SPECIAL-USE)"]
        reply = await self._run("LIST", lambda: Command("LIST", self._tag(), *args, loop=self._loop))
        return parse_list(reply.lines)

    async def sent_folder(self) -> str | None:
        """The Sent folder by RFC 6154 ``\\Sent``, else by a well-known name; None if absent."""
        return choose_sent_folder(await self.list_folders())

    async def select(self, folder: str, *, readonly: bool = True) -> FolderStatus:
        """Open ``folder`` (EXAMINE when ``readonly``), enabling CONDSTORE when offered."""
        verb = "EXAMINE" if readonly else "SELECT"
        args = [mailbox_arg(folder)]
        if self.has_condstore:
            args.append("(CONDSTORE)")
        async with self._lock:
            self._selected = None
            reply = await self._execute(
                f"{verb} {folder}", lambda: Command(verb, self._tag(), *args, loop=self._loop)
            )
            if reply.result != "OK":
                # A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
                self._protocol.state = AUTH
                self._expect_ok(reply, f"{verb} {folder}")
            status = parse_select(reply.lines)
            self._protocol.state = SELECTED
            self._selected = folder
            self._condstore_enabled = self.has_condstore
        return status
