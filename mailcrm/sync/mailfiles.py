"""Reading messages out of mail files (mbox, Maildir) with bounded memory.

Files given to `mailcrm import` are hostile input: a Takeout export can hold messages of
tens of megabytes, a Maildir entry can be a symlink to `/dev/zero` or a FIFO. So:

- nothing is read whole: an mbox is streamed in pieces of at most `_PIECE` bytes, and a
  Maildir entry is read up to the message cap plus one byte;
- a message larger than the cap is skipped (never kept in memory past the cap) and
  reported with where it is: the Maildir file, or the mbox's message number and byte
  offset;
- only regular files are read. A Maildir entry is opened non-blocking (a FIFO with no
  writer would otherwise hang the open) and checked with `fstat` on the open descriptor,
  so what is read is what was checked. Symlinks are followed: a Maildir that links to
  messages elsewhere is legitimate, a link to a device is not;
- a file that is not an mbox at all (no `From ` line at its start, or binary) is
  refused before anything is imported.

The readers yield `RawMessage` or `Skipped` items in file order; the caller batches.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailcrm.errors import ImportFileError
from mailcrm.textfile import file_kind

log = logging.getLogger(__name__)

_PIECE = 64 * 1024
"""The most an mbox read takes at once, so a file without line breaks stays bounded."""

_SNIFF = 8 * 1024
"""How much of an mbox is looked at to tell it from a binary or unrelated file."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message's bytes; `done` is how far through the source it is (for progress)."""

    data: bytes
    done: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message (or Maildir entry) that was not imported: where it is and why."""

    where: str
    why: str
    done: int


Item = RawMessage | Skipped


def _too_big(size: int, cap: int) -> str:
    return f"larger than sync.max_message_bytes ({size:,} bytes > {cap:,})"


class MaildirSource:
    """The messages of a Maildir's `new/` and `cur/` folders, one file each."""

    def __init__(self, path: Path, max_message_bytes: int) -> None:
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ImportFileError(
                f"{path}: not a Maildir (no cur/ or new/ folder)", hint="give the Maildir's top folder"
            )
        self.path = path
        self.max_message_bytes = max_message_bytes
        self.entries: list[Path] = []
        for folder in (path / "new", path / "cur"):
            if not folder.is_dir():
                continue
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                raise ImportFileError(
                    f"{folder}: cannot be listed ({exc.strerror})",
                    hint="give mailcrm's user read access to the Maildir",
                ) from None
            self.entries.extend(folder / name for name in names if not name.startswith("."))
        self.total = len(self.entries)

    def __iter__(self) -> Iterator[Item]:
        for done, entry in enumerate(self.entries, start=1):
            yield self._read(entry, done)

    def _read(self, entry: Path, done: int) -> Item:
        where = _describe(entry)
        try:
            # stat (following links) names what a refused entry is; O_NONBLOCK keeps an
            # open of a FIFO from waiting for a writer; fstat checks what was opened.
            if not stat.S_ISREG(mode := os.stat(entry).st_mode):
                return Skipped(where, f"{file_kind(mode)}, not a message file", done)
            fd = os.open(entry, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            return Skipped(where, f"cannot be read ({exc.strerror})", done)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Skipped(where, f"{file_kind(info.st_mode)}, not a message file", done)
            if info.st_size > self.max_message_bytes:
                return Skipped(where, _too_big(info.st_size, self.max_message_bytes), done)
            data = _read_at_most(fd, self.max_message_bytes + 1)
        except OSError as exc:
            return Skipped(where, f"cannot be read ({exc.strerror})", done)
        finally:
            os.close(fd)
        if len(data) > self.max_message_bytes:  # it grew since fstat
            return Skipped(where, _too_big(len(data), self.max_message_bytes), done)
        return RawMessage(data, done)


def _describe(entry: Path) -> str:
    """The entry's path, and where it points when it is a symlink."""
    try:
        return f"{entry} (a link to {os.readlink(entry)})" if entry.is_symlink() else str(entry)
    except OSError:
        return str(entry)


def _read_at_most(fd: int, limit: int) -> bytes:
    pieces: list[bytes] = []
    left = limit
    while left > 0:
        piece = os.read(fd, min(left, 1 << 20))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


class MboxSource:
    """The messages of an mbox file (mboxo/mboxrd, as Gmail Takeout writes), streamed."""

    def __init__(self, path: Path, max_message_bytes: int) -> None:
        try:
            info = path.stat()
        except OSError as exc:
            raise ImportFileError(
                f"{path}: cannot be read ({exc.strerror})", hint="give the path of a .mbox file"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise ImportFileError(
                f"{path}: {file_kind(info.st_mode)}, not an mbox file", hint="give the path of a .mbox file"
            )
        self.path = path
        self.max_message_bytes = max_message_bytes
        self.total = info.st_size
        with path.open("rb") as handle:
            self._check_start(handle.read(_SNIFF))

    def _check_start(self, head: bytes) -> None:
        """Refuse a binary file, or one that does not start with a `From ` line."""
        if b"\0" in head:
            raise ImportFileError(
                f"{self.path}: a binary file, not an mbox (NUL bytes in its first "
                f"{len(head)} bytes); nothing imported",
                hint="give the path of a .mbox file (an mbox is text: messages separated by `From ` lines)",
            )
        start = head.lstrip(b"\r\n\t ")
        if start and not start.startswith(b"From "):
            raise ImportFileError(
                f"{self.path}: not an mbox file (it does not start with a `From ` separator line); "
                "nothing imported",
                hint="an mbox holds messages separated by `From sender date` lines; for a single "
                "message (.eml), put it in a Maildir's new/ folder and use `mailcrm import maildir`",
            )

    def __iter__(self) -> Iterator[Item]:
        number = 0  # messages seen so far; the current one's number
        start = 0  # byte offset of the current message's `From ` line
        offset = 0
        data = bytearray()  # one buffer, not a list of lines: a line costs ~40 bytes more
        size = 0
        at_line_start = True
        with self.path.open("rb") as handle:
            while piece := handle.readline(_PIECE):
                if at_line_start and piece.startswith(b"From "):
                    if number:
                        yield self._message(number, start, data, size, offset)
                    number, start, data, size = number + 1, offset, bytearray(), 0
                elif number:
                    size += len(piece)
                    if size <= self.max_message_bytes:
                        data += piece
                    elif data:
                        data = bytearray()  # over the cap: keep counting, stop keeping
                offset += len(piece)
                at_line_start = piece.endswith(b"\n")
        if number:
            yield self._message(number, start, data, size, offset)

    def _message(self, number: int, start: int, data: bytearray, size: int, done: int) -> Item:
        if size > self.max_message_bytes:
            where = f"{self.path}, message {number} at byte {start}"
            return Skipped(where, _too_big(size, self.max_message_bytes), done)
        # Less the blank line that separates it from the next `From ` line.
        end = len(data) - (2 if data.endswith(b"\n\r\n") else 1 if data.endswith(b"\n\n") else 0)
        raw = bytes(memoryview(data)[:end])
        data.clear()
        return RawMessage(raw, done)


MailSource = MaildirSource | MboxSource


def open_source(kind: str, path: Path, max_message_bytes: int) -> MailSource:
    """The messages of `path`; a clear error when it is not what `kind` says."""
    if kind == "mbox":
        return MboxSource(path, max_message_bytes)
    return MaildirSource(path, max_message_bytes)
