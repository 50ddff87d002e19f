"""Pure IMAP response parsing: response lines in, typed records out. No IO here.

Input is what the transport hands over: a sequence of text lines (``bytes``, without CRLF)
and literal payloads (``bytearray``) following the line that announced them with
``{size}``. Untagged lines may still carry their ``* `` prefix and keyword (as recorded
on the wire) or have them stripped (as aioimaplib delivers most async responses); every
parser accepts both, so recorded server bytes can be replayed in tests via `split_wire`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeAlias

from mailcrm.imap.errors import ImapParseError

Line: TypeAlias = bytes | bytearray
Item: TypeAlias = "bytes | list[Item] | None"

SPECIAL_USE_FLAGS = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
# Names tried, in this order, when no folder carries the RFC 6154 \Sent attribute.
SENT_FALLBACK_NAMES = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "[Gmail]/Sent Mail",
    "INBOX.Sent",
    "INBOX/Sent",
)

_SPECIAL_USE_BY_KEY = {flag.lower(): flag for flag in SPECIAL_USE_FLAGS}
_UNSELECTABLE = frozenset({"\\noselect", "\\nonexistent"})


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One LIST entry; `name` is decoded from modified UTF-7."""

    name: str
    delimiter: str | None
    flags: frozenset[str]

    @property
    def special_use(self) -> str | None:
        """The RFC 6154 role (``\\Sent``, ``\\Drafts`` ...) in canonical spelling, if any."""
        for flag in sorted(self.flags):
            canonical = _SPECIAL_USE_BY_KEY.get(flag.lower())
            if canonical is not None:
                return canonical
        return None

    @property
    def selectable(self) -> bool:
        return not any(flag.lower() in _UNSELECTABLE for flag in self.flags)


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What SELECT/EXAMINE reports; the sync cursor is only valid while `uidvalidity` holds."""

    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """A message's exact bytes (``BODY[]``) with the metadata fetched alongside."""

    uid: int
    raw: bytes
    size: int
    flags: frozenset[str]
    internaldate: datetime | None
    modseq: int | None


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """A flag change reported by ``FETCH ... (CHANGEDSINCE n)``."""

    uid: int
    flags: frozenset[str]
    modseq: int | None


@dataclass(frozen=True, slots=True)
class FolderChanges:
    """What changed in a folder since a known HIGHESTMODSEQ: flag states, and with QRESYNC
    the UIDs expunged meanwhile as ranges (``vanished`` is None without QRESYNC, when the
    caller has to find expunges itself)."""

    flags: list[FlagUpdate]
    vanished: list[tuple[int, int]] | None


@dataclass(frozen=True, slots=True)
class FetchData:
    """The items of one untagged FETCH response that the sync uses (None when absent)."""

    seq: int
    uid: int | None = None
    size: int | None = None
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    modseq: int | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class MailboxEvents:
    """Unsolicited responses (IDLE pushes, NOOP results) summarised for the change check."""

    exists: int | None = None
    expunged: int = 0
    flag_changes: int = 0
    bye: str | None = None

    @property
    def changed(self) -> bool:
        return self.exists is not None or self.expunged > 0 or self.flag_changes > 0

    @property
    def only_new_mail(self) -> bool:
        """Only EXISTS was announced: no FETCH (flags), EXPUNGE or VANISHED."""
        return self.exists is not None and self.expunged == 0 and self.flag_changes == 0

    def plus(self, later: MailboxEvents) -> MailboxEvents:
        """Both summaries as one: counts added, the later EXISTS and BYE winning."""
        return MailboxEvents(
            later.exists if later.exists is not None else self.exists,
            self.expunged + later.expunged,
            self.flag_changes + later.flag_changes,
            later.bye or self.bye,
        )


# -- modified UTF-7 (RFC 3501 section 5.1.3) -----------------------------------------------


def encode_mutf7(name: str) -> str:
    """Mailbox name as sent on the wire: printable ASCII stays, ``&`` is ``&-``, the rest is
    base64 of UTF-16BE between ``&`` and ``-`` with ``,`` instead of ``/``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + data.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_mutf7(raw: str | bytes) -> str:
    """Inverse of `encode_mutf7`; raises ValueError for text that is not modified UTF-7."""
    text = raw.decode("ascii") if isinstance(raw, bytes | bytearray) else raw
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("&", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find("-", start + 1)
        if end < 0:
            raise ValueError(f"unterminated '&' shift in mailbox name {text!r}")
        if end == start + 1:
            out.append("&")
        else:
            chunk = text[start + 1 : end].replace(",", "/")
            try:
                data = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
            except ValueError as exc:
                raise ValueError(f"bad base64 in mailbox name {text!r}") from exc
            if len(data) % 2:
                raise ValueError(f"odd UTF-16 length in mailbox name {text!r}")
            out.append(data.decode("utf-16-be"))
        pos = end + 1
    return "".join(out)


def quote(text: str) -> str:
    """An IMAP quoted string (callers encode mailbox names with `encode_mutf7` first)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_arg(name: str) -> str:
    """A mailbox name ready to be a command argument."""
    return quote(encode_mutf7(name))


def uid_set_text(uids: Iterable[int]) -> str:
    """Compact UID set: ``[1, 2, 3, 7, 9, 10]`` -> ``"1:3,7,9:10"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev > start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(parts)


def parse_uid_set(text: bytes) -> list[tuple[int, int]]:
    """``b"1:3,7,9:8"`` -> ``[(1, 3), (7, 7), (8, 9)]``: ranges, never expanded (a
    VANISHED set can span millions of UIDs)."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(b","):
        first, _, last = part.strip().partition(b":")
        last = last or first
        if not (_UID.fullmatch(first) and _UID.fullmatch(last)):
            raise ImapParseError(f"malformed UID set: {_snippet(text)}")
        low, high = int(first), int(last)
        ranges.append((min(low, high), max(low, high)))
    return ranges


_UID = re.compile(rb"[1-9][0-9]{0,9}")  # RFC 3501 nz-number; UIDs are 32-bit


# -- wire framing --------------------------------------------------------------------------

_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\Z")


def split_wire(data: bytes) -> list[Line]:
    """Cut raw server bytes into lines and literal payloads the way the transport does.

    Text after a literal up to the next CRLF becomes its own line when not empty.
    """
    out: list[Line] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise ImapParseError("response does not end with CRLF")
        line = data[pos:end]
        pos = end + 2
        while (literal := _LITERAL_AT_END.search(line)) is not None:
            if line:
                out.append(line)
            size = int(literal.group(1))
            if pos + size > len(data):
                raise ImapParseError("literal is longer than the response")
            out.append(bytearray(data[pos : pos + size]))
            pos += size
            end = data.find(b"\r\n", pos)
            if end < 0:
                raise ImapParseError("response does not end with CRLF")
            line = data[pos:end]
            pos = end + 2
        if line:
            out.append(line)
    return out


# -- tokenizer -----------------------------------------------------------------------------

_TOKEN = re.compile(
    rb" *(?:"
    rb"(?P<open>\()"
    rb"|(?P<close>\))"
    rb'|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|\{(?P<literal>\d+)\+?\}\Z"
    rb'|(?P<atom>(?:[^\x00-\x20()"{\[\x7f]|\[[^\]]*\])+)'
    rb")"
)
_UNESCAPE = re.compile(rb"\\(.)")
_SPACES = re.compile(rb" *\Z")


def _as_bytes(text: Line | str) -> Line:
    return text.encode("utf-8") if isinstance(text, str) else text


def _snippet(text: Line) -> str:
    shown = bytes(text[:120]).decode("utf-8", "replace")
    return shown + ("..." if len(text) > 120 else "")


def _read(lines: Sequence[Line], index: int, text: bytes) -> tuple[list[Item], int]:
    """Tokens of the response starting at ``lines[index]`` (whose data is ``text``), following
    literals and the text after them; returns the tokens and the index after the response."""
    stack: list[list[Item]] = [[]]
    pos = 0
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            if _SPACES.match(text, pos):
                if len(stack) > 1:
                    raise ImapParseError(f"unbalanced parentheses in response: {_snippet(text)}")
                return stack[0], index + 1
            raise ImapParseError(f"cannot parse response near: {_snippet(text[pos:])}")
        pos = match.end()
        kind = match.lastgroup
        if kind == "open":
            child: list[Item] = []
            stack[-1].append(child)
            stack.append(child)
        elif kind == "close":
            if len(stack) == 1:
                raise ImapParseError(f"unbalanced parentheses in response: {_snippet(text)}")
            stack.pop()
        elif kind == "quoted":
            stack[-1].append(_UNESCAPE.sub(rb"\1", match.group("quoted")))
        elif kind == "atom":
            atom = match.group("atom")
            stack[-1].append(None if atom.upper() == b"NIL" else atom)
        else:
            size = int(match.group("literal"))
            index += 1
            if index >= len(lines) or len(lines[index]) != size:
                raise ImapParseError(f"literal of {size} bytes missing after: {_snippet(text)}")
            stack[-1].append(bytes(lines[index]))
            after = index + 1
            following = lines[after] if after < len(lines) else None
            # Text following a literal continues the response only inside parentheses or
            # when it starts with SP/")"; otherwise it is the next response.
            if isinstance(following, bytes) and (len(stack) > 1 or following[:1] in (b" ", b")")):
                index, text, pos = after, following, 0
                continue
            if len(stack) > 1:
                raise ImapParseError(f"unbalanced parentheses in response: {_snippet(text)}")
            return stack[0], after


def _data(line: Line, keywords: tuple[bytes, ...]) -> bytes | None:
    """The data of an untagged response named by one of ``keywords``, with or without its
    ``* `` prefix and keyword; None for a different response or a literal payload."""
    if not isinstance(line, bytes):
        return None
    tagged = line.startswith(b"* ")
    text = line[2:] if tagged else line
    head, _, rest = text.partition(b" ")
    if head.upper() in keywords:
        return rest
    return None if tagged else text


def parse_items(lines: Sequence[Line]) -> list[list[Item]]:
    """Generic tokenization of each response in ``lines`` (atoms, strings, literals, lists)."""
    out: list[list[Item]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not isinstance(line, bytes):
            index += 1
            continue
        tokens, index = _read(lines, index, line[2:] if line.startswith(b"* ") else line)
        out.append(tokens)
    return out


def _text(item: Item, what: str) -> str:
    if not isinstance(item, bytes):
        raise ImapParseError(f"expected {what}, got {item!r}")
    return item.decode("utf-8", "replace")


def _int(item: Item, what: str) -> int:
    if not isinstance(item, bytes) or not item.isdigit():
        raise ImapParseError(f"expected a number for {what}, got {item!r}")
    return int(item)


def _flags(item: Item, what: str = "FLAGS") -> frozenset[str]:
    if not isinstance(item, list):
        raise ImapParseError(f"expected a parenthesised list for {what}, got {item!r}")
    return frozenset(_text(flag, "a flag") for flag in item)


# -- CAPABILITY ----------------------------------------------------------------------------

_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


def parse_capabilities(lines: Sequence[Line]) -> frozenset[str]:
    """Capability names (upper case) from untagged CAPABILITY responses."""
    caps: set[str] = set()
    for line in lines:
        data = _data(line, (b"CAPABILITY",))
        if data is not None:
            caps.update(token.decode("ascii", "replace").upper() for token in data.split())
    return frozenset(caps)


def parse_capability_code(text: Line | str) -> frozenset[str] | None:
    """Capabilities from a ``[CAPABILITY ...]`` response code (greeting, login OK), if any."""
    text = _as_bytes(text)
    match = _CAPABILITY_CODE.search(text)
    if match is None:
        return None
    return frozenset(token.decode("ascii", "replace").upper() for token in match.group(1).split())


def response_code(text: Line | str) -> str | None:
    """The response code atom of a status text: ``[TRYCREATE] no such mailbox`` -> ``TRYCREATE``."""
    text = _as_bytes(text)
    match = re.match(rb"\s*\[([A-Za-z0-9.-]+)", text)
    return match.group(1).decode("ascii").upper() if match else None


# -- LIST ----------------------------------------------------------------------------------


def parse_list(lines: Sequence[Line]) -> list[FolderInfo]:
    """LIST (or LSUB/XLIST) responses, names decoded from modified UTF-7."""
    folders: list[FolderInfo] = []
    index = 0
    while index < len(lines):
        data = _data(lines[index], (b"LIST", b"LSUB", b"XLIST"))
        if data is None or not data.startswith(b"("):
            index += 1
            continue
        tokens, index = _read(lines, index, data)
        if len(tokens) < 3 or not isinstance(tokens[0], list):
            raise ImapParseError(f"malformed LIST response: {tokens!r}")
        flags = _flags(tokens[0], "LIST attributes")
        delimiter = None if tokens[1] is None else _text(tokens[1], "a hierarchy delimiter")
        raw_name = b"NIL" if tokens[2] is None else tokens[2]
        if not isinstance(raw_name, bytes):
            raise ImapParseError(f"malformed mailbox name in LIST: {tokens!r}")
        folders.append(FolderInfo(_mailbox_name(raw_name), delimiter, flags))
    return folders


def _mailbox_name(raw: bytes) -> str:
    try:
        return decode_mutf7(raw)
    except ValueError:
        # Servers with UTF8=ACCEPT (or broken ones) send raw 8-bit names.
        return raw.decode("utf-8", "replace")


def choose_sent_folder(folders: Iterable[FolderInfo]) -> str | None:
    """The Sent folder: the RFC 6154 ``\\Sent`` attribute wins, then well-known names
    (exact spelling first, then ignoring case)."""
    usable = [folder for folder in folders if folder.selectable]
    for folder in usable:
        if folder.special_use == "\\Sent":
            return folder.name
    by_name = {folder.name: folder.name for folder in usable}
    by_key = {folder.name.casefold(): folder.name for folder in reversed(usable)}
    for candidate in SENT_FALLBACK_NAMES:
        if candidate in by_name:
            return by_name[candidate]
    for candidate in SENT_FALLBACK_NAMES:
        if candidate.casefold() in by_key:
            return by_key[candidate.casefold()]
    return None


# -- SELECT / EXAMINE ----------------------------------------------------------------------

_EXISTS = re.compile(rb"(?:\* )?(\d+) EXISTS\Z", re.IGNORECASE)
_STATUS_CODE = re.compile(rb"(?:\* )?OK \[([A-Z]+)(?: (\d+))?\]", re.IGNORECASE)


def parse_select(lines: Sequence[Line]) -> FolderStatus:
    """The untagged data of SELECT/EXAMINE; UIDVALIDITY and EXISTS are required."""
    uidvalidity: int | None = None
    uidnext: int | None = None
    exists: int | None = None
    highestmodseq: int | None = None
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if match := _EXISTS.match(line):
            exists = int(match.group(1))
        elif match := _STATUS_CODE.match(line):
            code, number = match.group(1).upper(), match.group(2)
            if code == b"NOMODSEQ":
                highestmodseq = None
            elif number is not None:
                if code == b"UIDVALIDITY":
                    uidvalidity = int(number)
                elif code == b"UIDNEXT":
                    uidnext = int(number)
                elif code == b"HIGHESTMODSEQ":
                    highestmodseq = int(number)
    if uidvalidity is None:
        raise ImapParseError("the server did not report UIDVALIDITY for the folder")
    if exists is None:
        raise ImapParseError("the server did not report EXISTS for the folder")
    return FolderStatus(uidvalidity, uidnext, exists, highestmodseq)


# -- SEARCH --------------------------------------------------------------------------------


def parse_search(lines: Sequence[Line]) -> list[int]:
    """Numbers of SEARCH responses in server order (a CONDSTORE ``(MODSEQ n)`` is dropped).

    Plain split/int keeps a multi-megabyte result (hundreds of thousands of UIDs) fast.
    """
    numbers: list[int] = []
    for line in lines:
        data = _data(line, (b"SEARCH",))
        if data is None:
            continue
        paren = data.find(b"(")
        if paren >= 0:
            data = data[:paren]
        try:
            numbers.extend(map(int, data.split()))
        except ValueError:
            raise ImapParseError(f"malformed SEARCH response: {_snippet(data)}") from None
    return numbers


# -- FETCH ---------------------------------------------------------------------------------

_FETCH_START = re.compile(rb"(?:\* )?(\d+) FETCH (?=\()", re.IGNORECASE)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
    )
}
_INTERNALDATE = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\Z"
)


def parse_internaldate(raw: bytes) -> datetime:
    """``"17-Jul-1996 02:44:25 -0700"`` as an aware datetime (month names need no locale)."""
    match = _INTERNALDATE.match(raw)
    month = _MONTHS.get(match.group(2).upper().decode()) if match else None
    if match is None or month is None:
        raise ImapParseError(f"malformed INTERNALDATE {raw!r}")
    day, _, year, hour, minute, second, sign, off_h, off_m = match.groups()
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    zone = timezone(-offset if sign == b"-" else offset)
    try:
        return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone)
    except ValueError:
        raise ImapParseError(f"malformed INTERNALDATE {raw!r}") from None


def parse_fetch(lines: Sequence[Line]) -> list[FetchData]:
    """Every untagged FETCH response, with literals (message bodies) attached."""
    out: list[FetchData] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        match = _FETCH_START.match(line) if isinstance(line, bytes) else None
        if match is None or not isinstance(line, bytes):
            index += 1
            continue
        tokens, index = _read(lines, index, line[match.end() :])
        if len(tokens) != 1 or not isinstance(tokens[0], list):
            raise ImapParseError(f"malformed FETCH response: {_snippet(line)}")
        out.append(_fetch_data(int(match.group(1)), tokens[0]))
    return out


def _fetch_data(seq: int, items: list[Item]) -> FetchData:
    if len(items) % 2:
        raise ImapParseError(f"FETCH items do not come in pairs: {items!r:.200}")
    uid = size = modseq = None
    flags: frozenset[str] | None = None
    internaldate: datetime | None = None
    body: bytes | None = None
    for key, value in zip(items[::2], items[1::2], strict=True):
        name = _text(key, "a FETCH item name").upper()
        if name == "UID":
            uid = _int(value, name)
        elif name == "RFC822.SIZE":
            size = _int(value, name)
        elif name == "FLAGS":
            flags = _flags(value)
        elif name == "INTERNALDATE":
            if not isinstance(value, bytes):
                raise ImapParseError(f"malformed INTERNALDATE {value!r}")
            internaldate = parse_internaldate(value)
        elif name == "MODSEQ":
            if not isinstance(value, list) or len(value) != 1:
                raise ImapParseError(f"malformed MODSEQ {value!r}")
            modseq = _int(value[0], name)
        elif name in ("BODY[]", "RFC822", "BINARY[]"):
            if value is not None and not isinstance(value, bytes):
                raise ImapParseError(f"malformed {name} value")
            body = value
    return FetchData(seq, uid, size, flags, internaldate, modseq, body)


def fetched_messages(lines: Sequence[Line], wanted: Iterable[int]) -> list[FetchedMessage]:
    """Messages with bodies for the wanted UIDs, in UID order; unsolicited FETCH responses
    (flag changes of other messages) are ignored."""
    wanted_set = set(wanted)
    found: dict[int, FetchedMessage] = {}
    for data in parse_fetch(lines):
        if data.uid is None or data.uid not in wanted_set or data.body is None:
            continue
        found[data.uid] = FetchedMessage(
            uid=data.uid,
            raw=data.body,
            size=data.size if data.size is not None else len(data.body),
            flags=data.flags if data.flags is not None else frozenset(),
            internaldate=data.internaldate,
            modseq=data.modseq,
        )
    return [found[uid] for uid in sorted(found)]


def fetched_sizes(lines: Sequence[Line], wanted: Iterable[int]) -> dict[int, int]:
    """UID -> RFC822.SIZE for the wanted UIDs."""
    wanted_set = set(wanted)
    return {
        data.uid: data.size
        for data in parse_fetch(lines)
        if data.uid is not None and data.size is not None and data.uid in wanted_set
    }


def flag_updates(lines: Sequence[Line]) -> list[FlagUpdate]:
    """Flag states from a CHANGEDSINCE fetch, in UID order."""
    found = {
        data.uid: FlagUpdate(data.uid, data.flags, data.modseq)
        for data in parse_fetch(lines)
        if data.uid is not None and data.flags is not None
    }
    return [found[uid] for uid in sorted(found)]


_VANISHED_DATA = re.compile(rb"(?:\* )?VANISHED (?:\(EARLIER\) )?([0-9:,]+)\s*\Z", re.IGNORECASE)


def vanished_uids(lines: Sequence[Line]) -> list[tuple[int, int]]:
    """UID ranges of ``VANISHED`` responses (QRESYNC), ``(EARLIER)`` or not, in server order."""
    ranges: list[tuple[int, int]] = []
    for line in lines:
        if isinstance(line, bytes) and (match := _VANISHED_DATA.match(line)):
            ranges.extend(parse_uid_set(match.group(1)))
    return ranges


def unread_vanished(lines: Sequence[Line]) -> list[bytes]:
    """``VANISHED`` lines that `vanished_uids` skips, such as a set with ``*`` (which RFC 7162
    does not allow), so the caller can report them rather than lose them unnoticed."""
    return [
        bytes(line)
        for line in lines
        if isinstance(line, bytes) and _VANISHED.match(line) and not _VANISHED_DATA.match(line)
    ]


# -- APPEND and unsolicited responses ------------------------------------------------------

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_MESSAGE_EVENT = re.compile(rb"(?:\* )?(\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b", re.IGNORECASE)
_VANISHED = re.compile(rb"(?:\* )?VANISHED\b", re.IGNORECASE)
_BYE = re.compile(rb"(?:\* )?BYE\b ?(.*)", re.IGNORECASE | re.DOTALL)


def parse_appenduid(text: Line | str) -> tuple[int, int] | None:
    """(UIDVALIDITY, UID) from an APPEND's ``[APPENDUID v n]`` code (UIDPLUS), if present."""
    text = _as_bytes(text)
    match = _APPENDUID.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def scan_events(batches: Iterable[Sequence[Line]]) -> MailboxEvents:
    """Summarise untagged responses that tell the mailbox changed (or the server leaves)."""
    exists: int | None = None
    expunged = flag_changes = 0
    bye: str | None = None
    for lines in batches:
        for line in lines:
            if not isinstance(line, bytes):
                continue
            if match := _MESSAGE_EVENT.match(line):
                kind = match.group(2).upper()
                if kind == b"EXISTS":
                    exists = int(match.group(1))
                elif kind == b"EXPUNGE":
                    expunged += 1
                elif kind == b"FETCH":
                    flag_changes += 1
            elif _VANISHED.match(line):
                expunged += 1
            elif match := _BYE.match(line):
                bye = match.group(1).decode("utf-8", "replace").strip() or "BYE"
    return MailboxEvents(exists, expunged, flag_changes, bye)
