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


async def list_folders(conn: Connection) -> list[FolderInfo]:
    """All folders with their attributes (special-use roles included where offered)."""
    args = ['""', '"*"']
    if {"SPECIAL-USE", "LIST-EXTENDED"} <= conn.capabilities:
        args += ["RETURN", "(SPECIAL-USE)"]
    reply = await conn.run("LIST", lambda: Command("LIST", conn.tag(), *args, loop=conn.loop))
    return parse_list(reply.lines)


async def sent_folder(conn: Connection) -> str | None:
    """The Sent folder by RFC 6154 ``\\Sent``, else by a well-known name; None if absent."""
    return choose_sent_folder(await list_folders(conn))


async def select(conn: Connection, folder: str, *, readonly: bool = True) -> FolderStatus:
    """Open ``folder`` (EXAMINE when ``readonly``), enabling CONDSTORE when offered.

    UIDs only mean something in the folder selected last: ``conn.selected`` names it."""
    verb = "EXAMINE" if readonly else "SELECT"
    args = [mailbox_arg(folder)]
    if conn.has_condstore:
        args.append("(CONDSTORE)")
    async with conn.lock:
        conn.selected = None
        reply = await conn.execute(
            f"{verb} {folder}", lambda: Command(verb, conn.tag(), *args, loop=conn.loop)
        )
        if reply.result != "OK":
            # A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
            conn.protocol.state = AUTH
            conn.expect_ok(reply, f"{verb} {folder}")
        status = parse_select(reply.lines)
        conn.protocol.state = SELECTED
        conn.selected = folder
        conn.condstore_enabled = conn.has_condstore
    return status
