"""Reading the small files a person writes: configuration, rule files, secrets.

Such a path can lead anywhere: to a FIFO (reading waits forever for a writer), to a
device such as `/dev/zero` (reading never ends), to a directory, or to a runaway or
sparse file of gigabytes. Only regular files are read, opened without blocking and
checked on the open descriptor, and never more than a size no real file of the kind
reaches, so each of these ends in one clear error instead of a hang or a full memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailcrm.errors import MailcrmError

MAX_SETTINGS_BYTES = 16 << 20
"""Largest configuration or rule file read (a file of 10,000 rules is about 2 MB)."""
MAX_SECRET_BYTES = 64 << 10
"""Largest password file read (an OAuth2 access token is a few kilobytes)."""


class NotATextFile(MailcrmError, OSError):
    """The path exists but is no regular file of a sensible size; the message says what it is.

    An `OSError` too, so callers that name the path for any unreadable file handle it
    with the rest; a `MailcrmError`, so one that slips through still prints one line."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, for a message: `a directory`, `a FIFO`, `a device`, ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_bytes(path: Path, limit: int) -> bytes:
    """The content of the regular file `path` (symlinks followed), at most `limit` bytes.

    Raises `NotATextFile` for anything else or anything larger, and `OSError` (such as
    `FileNotFoundError`) when the file cannot be opened.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotATextFile(f"{file_kind(mode)}, not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotATextFile(f"larger than {limit:,} bytes")
    return data


def read_text(path: Path, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (a leading BOM kept; `UnicodeDecodeError` when not UTF-8)."""
    return read_bytes(path, limit).decode("utf-8")
