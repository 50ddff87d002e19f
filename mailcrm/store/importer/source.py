"""Reading a CSV file: UTF-8 checked up front, delimiter sniffed, records with their line."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailcrm.errors import ImportFileError

_SCAN_CHUNK = 1 << 20
# The csv module's own cap on one cell, far above `MAX_CELL_CHARS` (which refuses a row):
# reaching it means a quote that is never closed has swallowed the rest of the file, and
# it bounds the memory one record can take.
READER_FIELD_LIMIT = 16 << 20
# The longest line read at once: a file without line breaks (a disk image, a sparse file)
# would otherwise be read whole into memory before anything could refuse it. Twice the
# cell limit, so a quote left open is still reported as such, at the line it opens.
MAX_LINE_BYTES = 2 * READER_FIELD_LIMIT
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_RESAVE_HINT = "re-save the file as UTF-8, e.g. 'CSV UTF-8' in Excel's Save As"


def _not_utf8(path: Path, line: int, offset: int, byte: int) -> ImportFileError:
    return ImportFileError(
        f"{path}: line {line} (byte offset {offset}) is not UTF-8 text (byte 0x{byte:02x})",
        hint=_RESAVE_HINT,
    )


def _utf16(path: Path) -> ImportFileError:
    return ImportFileError(f"{path}: the file is UTF-16 text, not UTF-8", hint=_RESAVE_HINT)


def _bounded_lines(path: Path, handle: BinaryIO) -> Iterator[bytes]:
    """The file's lines, refusing one longer than `MAX_LINE_BYTES` before it fills memory."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            again = "; the rows before it were imported: fix the file and import it again"
            raise ImportFileError(
                f"{path}: line {number} runs past {MAX_LINE_BYTES:,} bytes without a line break",
                hint=f"the file is probably not CSV text{again if number > 1 else ''}",
            )
        yield raw


def _check_utf8(path: Path) -> None:
    """Refuse a file in another encoding before anything is written."""
    base = 0  # file offset of data[0]
    lines = 1
    pending = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_SCAN_CHUNK)
            if base == 0 and not pending and chunk.startswith(_UTF16_BOMS):
                raise _utf16(path)
            data = pending + chunk
            try:
                _, consumed = codecs.utf_8_decode(data, "strict", not chunk)
            except UnicodeDecodeError as exc:
                line = lines + data.count(b"\n", 0, exc.start)
                raise _not_utf8(path, line, base + exc.start, data[exc.start]) from None
            lines += data.count(b"\n", 0, consumed)
            base += consumed
            pending = data[consumed:]
            if not chunk:
                return


def _sniff_delimiter(header_line: str) -> str:
    """The most frequent of `,` `;` tab outside quotes in the header line (`,` on a tie)."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvSource:
    """A CSV file's header and records, each with the line it starts on.

    Lines are decoded one by one (a UTF-8 sequence never spans a newline), so the reader
    knows how many bytes it has consumed and `check` can be skipped when a first pass
    already proved the file is UTF-8.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        self.path = path
        self.bytes_read = 0
        try:
            if check:
                _check_utf8(path)
            with path.open("rb") as handle:
                first = next(_bounded_lines(path, handle), b"")
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.delimiter = _sniff_delimiter(first.decode("utf-8-sig"))
        self._records = self._read()
        for _, cells in self._records:
            if any(cell.strip() for cell in cells):
                self.header = cells
                break
        else:
            raise ImportFileError(f"{path} is empty", hint="the first line must name the columns")
        if any("\x00" in cell for cell in self.header):
            raise ImportFileError(
                f"{path}: line 1 is full of NUL characters: the file looks like UTF-16, not UTF-8",
                hint=_RESAVE_HINT,
            )

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """The records after the header."""
        return self._records

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        if csv.field_size_limit() != READER_FIELD_LIMIT:
            csv.field_size_limit(READER_FIELD_LIMIT)
        with self.path.open("rb") as handle:
            reader = csv.reader(self._lines(_bounded_lines(self.path, handle)), delimiter=self.delimiter)
            line = 0
            try:
                for cells in reader:
                    start = line + 1
                    line = reader.line_num
                    yield start, cells
            except csv.Error as exc:
                raise self._broken(line + 1, exc) from None

    def _broken(self, line: int, exc: csv.Error) -> ImportFileError:
        """The file cannot be read on from `line`: say where, and that re-running is safe."""
        again = "; the rows before it were imported: fix the file and import it again"
        if "field larger than field limit" in str(exc):
            return ImportFileError(
                f"{self.path}: line {line}: a cell runs past {READER_FIELD_LIMIT:,} characters",
                hint=f"a double quote opening a cell is probably never closed{again}",
            )
        return ImportFileError(
            f"{self.path}: line {line}: {exc}",
            hint=f'a double quote opening a cell must be closed; write "" for a literal quote{again}',
        )

    def _lines(self, handle: Iterable[bytes]) -> Iterator[str]:
        for number, raw in enumerate(handle, start=1):
            offset = self.bytes_read
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # the file changed since it was checked
                raise _not_utf8(self.path, number, offset + exc.start, raw[exc.start]) from None
            yield text[1:] if number == 1 and text.startswith("\ufeff") else text
