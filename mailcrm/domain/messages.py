"""Raw RFC 5322 bytes to a typed record: the parsing half of mailbox sync.

Speed decides the design. Sync must ingest 1,000+ messages a second on two cores. The
stdlib parsers cannot: `email.policy.default` builds a rich object per header (about
600 messages/s/core), and even `compat32` feeds every body line through Python code
(under 2,000/s/core on a typical mix, before any decoding). So the MIME structure is
read here: header blocks line by line, bodies only sliced at boundaries found with
`bytes.find`, and a body transfer-decoded only when its text, size or report fields are
needed. Everything else is decoded here too: encoded words and charsets (`charsets`),
addresses (a strict tokenizer that refuses the ambiguous shapes behind CVE-2023-27043,
which this Python's `getaddresses` accepts), dates, Message-IDs, the body text (HTML via
`html_text`) and attachment metadata.

`parse_message` never raises: whatever cannot be read becomes a defect string and
the record holds what could be read.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType

from mailcrm.domain.addresses import InvalidAddress, normalize_address
from mailcrm.domain.charsets import decode_text, decode_words
from mailcrm.domain.html_text import html_to_text

TEXT_LIMIT = 256 * 1024  # characters of body text kept
SNIPPET_LENGTH = 200
HEADER_LIMIT = 32 * 1024  # characters of one header value decoded
ADDRESS_HEADER_LIMIT = 256 * 1024
MAX_REFERENCES = 256
MAX_PARTS = 500
MAX_DEPTH = 32
MAX_HEADERS = 256  # distinct header names kept in `headers`
_HTML_BYTES_LIMIT = 2 * 1024 * 1024
_TEXT_BYTES_LIMIT = TEXT_LIMIT * 4  # enough bytes for TEXT_LIMIT characters in any charset
_HASH_BODY_BYTES = 4096
_SYNTHETIC_DOMAIN = "hash.mailcrm.invalid"


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address from From/To/Cc/Reply-To/Sender."""

    address: str | None  # normalised; None when missing, unusable or ambiguous
    name: str  # decoded display name, '' when none


@dataclass(frozen=True, slots=True)
class Attachment:
    """Metadata of one attached (or inline, non-body) part."""

    filename: str | None
    content_type: str
    size: int  # decoded bytes
    inline: bool = False  # Content-Disposition: inline, e.g. an image shown in the HTML body


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """One per-recipient block of an RFC 3464 `message/delivery-status` part, as written.

    Address-type prefixes (`rfc822;`, `smtp;`) are removed; interpretation (hard or soft,
    failed or delayed) is the classifier's.
    """

    final_recipient: str | None
    original_recipient: str | None
    action: str | None  # lower case: failed, delayed, delivered, relayed, expanded
    status: str | None  # the enhanced status code, e.g. '5.1.1'
    diagnostic: str | None


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """The machine-readable part of an abuse complaint (ARF, RFC 5965 `message/feedback-report`)."""

    feedback_type: str | None  # lower case: abuse, fraud, virus, not-spam, other, ...
    original_rcpt_to: tuple[str, ...]  # Original-Rcpt-To and (older AOL) Removal-Recipient, as written
    original_mail_from: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What sync and classification need from one message."""

    message_id: str  # '<left@right>'; synthetic: '<sha256 hex@hash.mailcrm.invalid>'
    message_id_synthetic: bool  # the message had no usable Message-ID
    in_reply_to: tuple[str, ...]  # '<..>' ids
    references: tuple[str, ...]  # oldest first, each once
    from_: tuple[Mailbox, ...]
    sender: Mailbox | None
    reply_to: tuple[Mailbox, ...]
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    subject: str  # decoded; control characters replaced by spaces
    date: datetime | None  # aware, UTC; None when missing or unparseable (a defect)
    text: str  # body text, at most TEXT_LIMIT characters
    snippet: str  # at most SNIPPET_LENGTH characters
    attachments: tuple[Attachment, ...]
    headers: Mapping[str, str] = field(hash=False)  # lower-case name -> decoded first value
    size: int  # bytes of the raw message
    defects: tuple[str, ...]  # what could not be read as the standards say
    content_type: str = "text/plain"  # of the whole message
    report_type: str | None = None  # report-type of a multipart/report
    delivery_status: tuple[DeliveryStatus, ...] = ()
    enclosed_message_id: str | None = None  # of the first message/rfc822 or text/rfc822-headers part
    # Headers of that enclosed original (the message a report is about), lower-case
    # names, raw values; only the ones classification reads (`ENCLOSED_HEADERS`). A plain
    # dict, not a mapping proxy: the record crosses the parsing process boundary pickled.
    enclosed_headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    feedback: FeedbackReport | None = None  # of a `message/feedback-report` part

    @property
    def malformed(self) -> bool:
        return bool(self.defects)


# --- small text helpers -------------------------------------------------------------------

# C0 and C1 controls, DEL and Unicode line/paragraph separators become spaces.
_CONTROLS = dict.fromkeys((*range(0, 32), *range(127, 160), 8232, 8233), " ")
# The same characters for `re.sub`: str.translate with a dict walks non-ASCII text
# character by character in Python-object speed, the regular expression does not.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _storable(text: str) -> str:
    """Text a database accepts: no NUL, no lone surrogates (the UTF-7 decoder can make them)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean(text: str) -> str:
    """One-line text: control characters become spaces."""
    if text.isprintable():
        return text.strip()
    return _storable(text.translate(_CONTROLS)).strip()


def _to_bytes(value: str) -> bytes:
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _decode(value: str, hint: str | None, label: str, defects: list[str]) -> str:
    text, notes = decode_words(value, hint)
    defects.extend(f"{label}: {note}" for note in notes)
    return text


# --- Message-IDs --------------------------------------------------------------------------

_MESSAGE_ID = re.compile(r"<([^<>\s]{1,995}+)>")


def _valid_id(content: str) -> bool:
    return content.isprintable() and "@" not in (content[0], content[-1])


def normalize_message_id(raw: str) -> str | None:
    """The `<left@right>` form of a Message-ID header value, or None when there is none."""
    text = raw.strip()
    if not text:
        return None
    match = _MESSAGE_ID.search(text[:HEADER_LIMIT])
    if match is None:
        squeezed = "".join(text[:HEADER_LIMIT].split())  # folded inside the brackets
        match = _MESSAGE_ID.search(squeezed)
        if match is None:
            bare = squeezed.strip("<>")
            if "@" in bare and "<" not in bare and ">" not in bare and len(bare) <= 995 and _valid_id(bare):
                return f"<{bare}>"
            return None
    content = match.group(1)
    return f"<{content}>" if _valid_id(content) else None


def _message_ids(raw: str) -> list[str]:
    """Every Message-ID in a References/In-Reply-To value, in order, each once."""
    seen: dict[str, None] = {}
    for match in _MESSAGE_ID.finditer(raw[:ADDRESS_HEADER_LIMIT]):
        content = match.group(1)
        if _valid_id(content):
            seen.setdefault(f"<{content}>", None)
    ids = list(seen)
    if len(ids) > MAX_REFERENCES:  # RFC 5322 trimming: keep the root and the recent ones
        ids = [ids[0], *ids[len(ids) - MAX_REFERENCES + 1 :]]
    return ids


def thread_key(message: ParsedMessage) -> str:
    """The id a conversation is filed under: its root when known, else the message itself."""
    if message.references:
        return message.references[0]
    if message.in_reply_to:
        return message.in_reply_to[0]
    return message.message_id


FLAGS_TEXT_LIMIT = 1000  # characters: the size of `message_location.flags`


def flags_text(flags: Iterable[str]) -> str:
    """IMAP flags as stored: sorted, space separated; flags that do not fit are left out
    whole (a cut flag would be a different flag)."""
    kept: list[str] = []
    length = -1
    for flag in sorted(set(flags)):
        if length + 1 + len(flag) > FLAGS_TEXT_LIMIT:
            break
        kept.append(flag)
        length += 1 + len(flag)
    return " ".join(kept)


# --- addresses ----------------------------------------------------------------------------

_ADDR_SPEC = r"[^<>()\",:;\\\s@\[\]]++@[^<>()\",:;\\\s@]++"
# The two everyday shapes, `Name <a@b>` / `"Name" <a@b>` and a bare `a@b`, skip the tokenizer.
_SIMPLE_MAILBOX = re.compile(
    rf"\s*+(?:\"([^\"\\]*+)\"|([^\"()<>,:;@\\\[\]]*?))\s*+<({_ADDR_SPEC})>\s*+|\s*+({_ADDR_SPEC})\s*+"
)
_ADDRESS_TOKEN = re.compile(r"\"(?:[^\"\\]|\\.)*+\"?|\\.?|[()<>,:;]|[^\"()<>,:;\\]++", re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def _address(spec: str, label: str, defects: list[str]) -> str | None:
    spec = spec.strip()
    if not spec:
        return None
    if not spec.isascii():
        spec = _to_bytes(spec).decode("utf-8", "replace")
    try:
        return normalize_address(spec)
    except InvalidAddress:
        defects.append(f"{label}: unusable address {spec[:80]!r}")
        return None


def _display_name(raw: str, hint: str | None, label: str, defects: list[str]) -> str:
    if not raw or raw.isspace():
        return ""
    text = _decode(raw, hint, label, defects)
    return " ".join(_clean(text).split())


class _MailboxBuilder:
    """Collects the tokens of one mailbox and judges whether they say one thing."""

    __slots__ = (
        "angle",
        "angles",
        "comments",
        "label",
        "phrase",
        "phrase_at",
        "problems",
        "spec",
        "spec_words",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self.phrase: list[str] = []  # display-name text, quotes removed
        self.spec: list[str] = []  # the same tokens as written, for a bare addr-spec
        self.spec_words = 0  # whitespace-separated runs outside quoted strings
        self.phrase_at = False  # an unquoted '@' outside angle brackets
        self.angles: list[str] = []
        self.angle: list[str] | None = None
        self.comments: list[str] = []
        self.problems: list[str] = []

    def add_spec(self, token: str) -> None:
        if token[0] == '"':
            if not self.spec or self.spec[-1][-1:].isspace():
                self.spec_words += 1
        else:
            words = token.split()
            if words:
                joined = bool(self.spec) and not token[0].isspace() and not self.spec[-1][-1:].isspace()
                self.spec_words += len(words) - joined
        self.spec.append(token)

    def empty(self) -> bool:
        return not ("".join(self.phrase).strip() or self.angles or self.angle or self.problems)

    def build(self, hint: str | None, defects: list[str]) -> Mailbox:
        if self.angle is not None:
            self.problems.append("unclosed '<'")
            self.angles.append("".join(self.angle))
        phrase = "".join(self.phrase)
        if len(self.angles) > 1:
            self.problems.append("several <addresses> in one mailbox")
        if self.angles and self.phrase_at:
            self.problems.append("unquoted '@' in the display name")
        if self.angles:
            spec = self.angles[0].strip()
            if spec.startswith("@") and ":" in spec:  # obsolete source route <@relay:user@host>
                spec = spec.rpartition(":")[2]
            if "," in spec or ":" in spec:
                self.problems.append("list inside <...>")
            name_raw = phrase
        else:
            spec = "".join(self.spec).strip()
            name_raw = " ".join(self.comments)
            if self.spec_words > 1 and "@" in spec:
                self.problems.append("text around the address")
        name = _display_name(name_raw, hint, self.label, defects)
        if self.problems:
            defects.append(f"{self.label}: ambiguous mailbox ({'; '.join(self.problems)})")
            return Mailbox(None, name)
        if self.angles or "@" in spec:
            return Mailbox(_address(spec, self.label, defects), name)
        # Only a phrase: a name without an address.
        defects.append(f"{self.label}: no address in {spec[:80]!r}")
        return Mailbox(None, _display_name(phrase, hint, self.label, defects))


def _tokenized_mailboxes(value: str, label: str, hint: str | None, defects: list[str]) -> list[Mailbox]:
    """Strict RFC 5322 address-list reading; a mailbox whose structure is unclear gets no address."""
    mailboxes: list[Mailbox] = []
    current = _MailboxBuilder(label)
    depth = 0  # comment nesting
    comment: list[str] = []
    in_group = False

    def finish() -> None:
        nonlocal current
        if not current.empty():
            mailboxes.append(current.build(hint, defects))
        current = _MailboxBuilder(label)

    for token in _ADDRESS_TOKEN.findall(value):
        if depth:
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if depth == 0:
                    current.comments.append("".join(comment))
                    comment = []
                    continue
            comment.append(token)
            continue
        if current.angle is not None:
            if token == ">":
                current.angles.append("".join(current.angle))
                current.angle = None
            elif token == "(":
                depth = 1
            elif token in ("<", ")"):
                current.problems.append(f"{token!r} inside <...>")
            else:
                current.angle.append(token)
            continue
        if token == "(":
            depth = 1
        elif token == ")":
            current.problems.append("unbalanced ')'")
        elif token == "<":
            current.angle = []
        elif token == ">":
            current.problems.append("unbalanced '>'")
        elif token == ",":
            finish()
        elif token == ":":
            if in_group or current.angles or "@" in "".join(current.phrase):
                current.problems.append("unexpected ':'")
            else:  # group syntax: the text so far names the group, not a mailbox
                in_group = True
                current = _MailboxBuilder(label)
        elif token == ";":
            finish()
            if not in_group:
                defects.append(f"{label}: ';' used as an address separator")
            in_group = False
        elif token[0] == '"':
            if len(token) < 2 or not token.endswith('"') or (token.endswith('\\"') and _odd_escape(token)):
                current.problems.append("unterminated quoted string")
                token = token + '"'
            if current.angles:
                current.problems.append("text after <address>")
            current.phrase.append(_QUOTED_PAIR.sub(r"\1", token[1:-1]))
            current.add_spec(token)
        else:
            if current.angles and token.strip():
                current.problems.append("text after <address>")
            if "@" in token:
                current.phrase_at = True
            current.phrase.append(token)
            current.add_spec(token)
    if depth:
        current.problems.append("unclosed '('")
        current.comments.append("".join(comment))
    finish()
    return mailboxes


def _odd_escape(token: str) -> bool:
    """True when the closing quote of `token` is itself escaped (an odd run of backslashes)."""
    run = len(token) - 1 - len(token[:-1].rstrip("\\"))
    return run % 2 == 1


def parse_mailboxes(value: str, label: str, hint: str | None, defects: list[str]) -> list[Mailbox]:
    """Mailboxes of one address header value (raw, unfolded)."""
    if len(value) > ADDRESS_HEADER_LIMIT:
        defects.append(f"{label}: header truncated")
        value = value[:ADDRESS_HEADER_LIMIT]
    if not value.strip():
        return []
    simple = _SIMPLE_MAILBOX.fullmatch(value)
    if simple is not None:
        quoted, plain, angled, bare = simple.groups()
        if bare is not None:
            return [Mailbox(_address(bare, label, defects), "")]
        name = _display_name(quoted if quoted is not None else plain or "", hint, label, defects)
        return [Mailbox(_address(angled, label, defects), name)]
    return _tokenized_mailboxes(value, label, hint, defects)


# --- header parameters (RFC 2045 / RFC 2231) ----------------------------------------------

_PARAM = re.compile(r";\s*+([^\s=;\"]++)\s*+=\s*+(\"(?:[^\"\\]|\\.)*+\"?|[^;]*+)")


def header_params(value: str) -> dict[str, str]:
    """Parameters of a Content-Type/Content-Disposition value, RFC 2231 continuations joined.

    Values that are not RFC 2231-encoded come back as written (quotes removed) and may
    still hold encoded words or raw 8-bit text.
    """
    simple: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[str, bool]]] = {}
    for match in _PARAM.finditer(value[:HEADER_LIMIT]):
        name = match.group(1).lower()
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:])
        if "*" not in name:
            simple.setdefault(name, raw)
            continue
        base, _, rest = name.partition("*")
        index_text = rest.rstrip("*")
        index = int(index_text) if index_text.isdigit() and len(index_text) <= 3 else 0
        extended.setdefault(base, {}).setdefault(index, (raw, rest == "" or rest.endswith("*")))
    for base, pieces in extended.items():
        charset: str | None = None
        data = bytearray()
        for position, index in enumerate(sorted(pieces)):
            text, encoded = pieces[index]
            if encoded:
                if position == 0 and text.count("'") >= 2:
                    charset, _, text = text.split("'", 2)
                data += urllib.parse.unquote_to_bytes(_to_bytes(text))
            else:
                data += _to_bytes(text)
        simple[base] = decode_text(bytes(data), charset or None)[0]
    return simple


# --- MIME structure -----------------------------------------------------------------------
#
# The stdlib's feed parser reads every body line through Python code (and compiles a
# regular expression per multipart boundary); on typical mail that alone is slower
# than the whole sync budget. Here headers are split per line, but bodies are only
# sliced: boundaries are found with bytes.find, and a body is transfer-decoded only
# when its text, size or report fields are needed.

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]++[ \t]*+:")
_CONTENT_TYPE = re.compile(r"\s*+([!#$%&'*+.^_`|~0-9A-Za-z-]++)/([!#$%&'*+.^_`|~0-9A-Za-z-]++)")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]++")
_HEADERS_IN_TEXT = re.compile(r"(?im)^message-id:[ \t]*+(?:\r?\n[ \t]++)?(<[^<>\s]{1,995}+>)")
_ORIGINAL_ID_IN_TEXT = re.compile(r"(?im)^original-message-id:[ \t]*+(?:\r?\n[ \t]++)?(<[^<>\s]{1,995}+>)")
_STATUS_CODE = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_TYPED_VALUE = re.compile(r"\s*+[\w-]{1,40}+\s*+;\s*+")  # 'rfc822;' / 'smtp;' / 'dns;'
_DELIVERY_STATUS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_HEADER_PARTS = frozenset({"text/rfc822-headers", "message/global-headers"})
_REPORT_PARTS = frozenset({"message/disposition-notification", "message/global-disposition-notification"})
_ENCLOSED = frozenset({"message/rfc822", "message/global"})
_FEEDBACK = frozenset({"message/feedback-report"})
# Headers of a report's enclosed original that say who sent it and to whom.
ENCLOSED_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "message-id", "x-hmxmroriginalrecipient", "x-original-to", "delivered-to"}
)
_IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})


def _read_headers(data: bytes, start: int, end: int) -> tuple[list[tuple[str, str]], int, list[str]]:
    """Header fields of the entity at `data[start:end]` and where its body starts.

    Names are lower case, values unfolded with raw 8-bit bytes kept as surrogate escapes.
    A line that is neither a header nor a continuation starts the body, as in the stdlib,
    unless it is a fold that lost its indentation (`_lost_indentation`).
    """
    notes: list[str] = []
    if data.startswith(b"\n", start, end) or data.startswith(b"\r\n", start, end):
        return [], data.index(b"\n", start) + 1, notes
    # Look for the blank line in the style of the first line ending first: the other
    # search then stops there instead of scanning the whole body.
    first_break = data.find(b"\n", start, end)
    if first_break > start and data[first_break - 1] == 0x0D:
        blank_crlf = data.find(b"\n\r\n", start, end)
        blank = data.find(b"\n\n", start, blank_crlf + 2 if blank_crlf >= 0 else end)
    else:
        blank = data.find(b"\n\n", start, end)
        blank_crlf = data.find(b"\n\r\n", start, blank + 2 if blank >= 0 else end)
    if blank_crlf >= 0 and (blank < 0 or blank_crlf < blank):
        block_end, body_start = blank_crlf, blank_crlf + 3
    elif blank >= 0:
        block_end, body_start = blank, blank + 2
    else:
        block_end = body_start = end
    fields: list[tuple[str, list[str]]] = []
    tally: list[tuple[int, int]] = []
    lines = _LINE_BREAK.split(data[start:block_end].decode("ascii", "surrogateescape"))
    for index, line in enumerate(lines):
        if not line:
            continue
        if line[0] in " \t":
            if fields:
                fields[-1][1].append(line)
            else:
                notes.append("continuation line before the first header")
            continue
        match = _HEADER_NAME.match(line)
        if match is not None:
            name = line[: match.end() - 1].rstrip(" \t").lower()
            fields.append((name, [line[match.end() :].lstrip(" \t")]))
        elif index == 0 and line.startswith("From "):
            continue  # mbox separator line
        elif fields and _lost_indentation(fields[-1][1][-1], index, tally := tally or _line_tally(lines)):
            fields[-1][1].append(" " + line)
            if "folded header line without leading whitespace" not in notes:
                notes.append("folded header line without leading whitespace")
        else:
            notes.append("no blank line between header and body")
            found = data.find(line.encode("ascii", "surrogateescape"), start, end)
            body_start = found if found >= 0 else body_start
            break
    return [(name, "".join(pieces).rstrip()) for name, pieces in fields], min(body_start, end), notes


def _line_tally(lines: list[str]) -> list[tuple[int, int]]:
    """For each line, how many header fields and how many other lines follow it."""
    tally = [(0, 0)] * (len(lines) + 1)
    fields = prose = 0
    for index in range(len(lines) - 1, -1, -1):
        tally[index + 1] = (fields, prose)
        line = lines[index]
        if line and line[0] not in " \t":
            if _HEADER_NAME.match(line) is not None:
                fields += 1
            else:
                prose += 1
    return tally


def _lost_indentation(previous: str, index: int, tally: list[tuple[int, int]]) -> bool:
    """Whether line `index`, neither a header nor indented, is a fold that lost its indent.

    Copies of notices pasted through tools that strip leading whitespace keep their blank
    line after the header. Such a line is taken as a continuation when it carries on a
    parameter list (the field so far ends with ';') or when header fields clearly
    dominate the rest of the block (`tally`, from `_line_tally`); a body that merely
    lacks its blank line has prose there, and stays the body. Only reached on malformed
    headers, so well-formed mail pays nothing.
    """
    if previous.rstrip().endswith(";"):
        return True
    fields, prose = tally[index + 1]
    return fields >= 2 and fields > prose


def _split_multipart(
    data: bytes, start: int, end: int, boundary: str
) -> tuple[list[tuple[int, int]], list[str]]:
    """Byte ranges of the body parts between `--boundary` lines (RFC 2046 section 5.1.1)."""
    delimiter = b"--" + _to_bytes(boundary)
    ranges: list[tuple[int, int]] = []
    notes: list[str] = []
    position = start
    part_start = -1
    closed = False
    while True:
        found = data.find(delimiter, position, end)
        if found < 0:
            break
        position = found + 1
        if found > start and data[found - 1] != 0x0A:
            continue  # not at the start of a line
        after = found + len(delimiter)
        closing = data.startswith(b"--", after, end)
        line_end = data.find(b"\n", after, end)
        line_end = end if line_end < 0 else line_end
        if data[after + 2 * closing : line_end].strip():
            continue  # a longer boundary that merely starts the same way
        if part_start >= 0:
            part_end = found - 1 if found > start else found
            if part_end > part_start and data[part_end - 1] == 0x0D:
                part_end -= 1
            ranges.append((part_start, max(part_start, part_end)))
        part_start = min(line_end + 1, end)
        position = part_start
        if len(ranges) >= MAX_PARTS:
            notes.append(f"more than {MAX_PARTS} parts; the rest ignored")
            closed = True
            break
        if closing:
            closed = True
            break
    if part_start < 0:
        notes.append("start boundary not found")
        return [], notes
    if not closed:
        notes.append("close boundary not found")
        if part_start < end:
            ranges.append((part_start, end))
    return ranges, notes


def _transfer_decode(body: bytes, encoding: str, notes: list[str]) -> bytes:
    if encoding in _IDENTITY_ENCODINGS:
        return body
    if encoding == "base64":
        try:
            return binascii.a2b_base64(body)
        except binascii.Error:
            notes.append("bad base64 body")
            clean = _NOT_BASE64.sub(b"", body)
            clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
            try:
                return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
            except binascii.Error:
                return b""
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
        out = bytearray()
        for line in body.splitlines():
            if line.startswith((b"begin ", b"end")) or not line.strip():
                continue
            try:
                out += binascii.a2b_uu(line)
            except binascii.Error:
                notes.append("bad uuencoded line")
        return bytes(out)
    notes.append(f"unknown transfer encoding {encoding[:40]!r}")
    return body


class _Part:
    """One MIME entity: its header fields and where its body lies in `data`."""

    __slots__ = ("body_start", "content_type", "data", "end", "headers", "params", "path")

    def __init__(
        self, data: bytes, start: int, end: int, path: str, default_type: str, notes: list[str]
    ) -> None:
        self.data = data
        self.end = end
        self.path = path
        self.headers, self.body_start, header_notes = _read_headers(data, start, end)
        notes.extend(f"{path}: {note}" for note in header_notes)
        raw_type = self.header("content-type") or ""
        match = _CONTENT_TYPE.match(raw_type)
        if match is not None:
            self.content_type = f"{match.group(1)}/{match.group(2)}".lower()
        else:
            if raw_type.strip():
                notes.append(f"{path}: invalid Content-Type {raw_type[:60]!r}")
            self.content_type = default_type
        self.params = header_params(raw_type) if ";" in raw_type else {}

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def encoding(self) -> str:
        return (self.header("content-transfer-encoding") or "").strip().lower()

    @property
    def disposition(self) -> str:
        return (self.header("content-disposition") or "").partition(";")[0].strip().lower()

    def payload(self, notes: list[str]) -> bytes:
        """The body with its transfer encoding undone."""
        body = self.data[self.body_start : self.end]
        label_notes: list[str] = []
        decoded = _transfer_decode(body, self.encoding, label_notes)
        notes.extend(f"{self.path}: {note}" for note in label_notes)
        return decoded


def _typed(value: str | None) -> str | None:
    """`rfc822; a@b` -> `a@b`: drop the RFC 3464 type prefix."""
    if value is None:
        return None
    match = _TYPED_VALUE.match(value)
    text = value[match.end() :] if match else value
    return _clean(text)[:1000] or None


def _status_blocks(text: str) -> list[list[tuple[str, str]]]:
    """`Name: value` groups separated by blank lines (the delivery-status body grammar)."""
    blocks: list[list[tuple[str, str]]] = []
    block: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if block:
                blocks.append(block)
                block = []
        elif line[0] in " \t" and block:
            name, value = block[-1]
            block[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            block.append((name.strip().lower(), value.strip()))
    if block:
        blocks.append(block)
    return blocks


class _Walk:
    """One pass over the MIME tree: body candidates, attachments and report fields."""

    def __init__(self) -> None:
        self.root: _Part | None = None
        self.plain: list[_Part] = []
        self.html: list[_Part] = []
        self.attachments: list[Attachment] = []
        self.delivery: list[DeliveryStatus] = []
        self.enclosed_id: str | None = None
        self.enclosed_headers: dict[str, str] = {}
        self.feedback: FeedbackReport | None = None
        self.report_type: str | None = None
        self.defects: list[str] = []
        self.charset_hint: str | None = None

    def run(self, raw: bytes) -> None:
        # (buffer, start, end, path, type of the parent, default content type, depth)
        stack: list[tuple[bytes, int, int, str, str, str, int]] = [
            (raw, 0, len(raw), "message", "", "text/plain", 0)
        ]
        seen = 0
        while stack:
            data, start, end, path, parent_type, default_type, depth = stack.pop()
            seen += 1
            if seen > MAX_PARTS:
                self.defects.append(f"more than {MAX_PARTS} MIME parts; the rest ignored")
                break
            part = _Part(data, start, end, path, default_type, self.defects)
            if self.root is None:
                self.root = part
            try:
                ranges = self.visit(part, parent_type, depth)
            except Exception as error:  # one unreadable part must not lose the others
                self.defects.append(f"{path}: unreadable part ({type(error).__name__})")
                continue
            prefix = "part " if path == "message" else f"{path}."
            ctype = part.content_type
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for number in range(len(ranges), 0, -1):  # reversed, so parts come off in order
                child_start, child_end = ranges[number - 1]
                child = (data, child_start, child_end, f"{prefix}{number}", ctype, child_default, depth + 1)
                stack.append(child)

    def visit(self, part: _Part, parent_type: str, depth: int) -> list[tuple[int, int]]:
        ctype = part.content_type
        if ctype == "multipart/report" and self.report_type is None:
            self.report_type = (part.params.get("report-type") or "").strip().lower() or None
        if ctype in _DELIVERY_STATUS:
            self.read_delivery_status(part)
            return []
        if ctype in _HEADER_PARTS:
            if self.enclosed_id is None:
                payload = part.payload(self.defects)[:65536]
                match = _HEADERS_IN_TEXT.search(payload.decode("latin-1"))
                self.enclosed_id = normalize_message_id(match.group(1)) if match else None
                self.keep_enclosed_headers(_read_headers(payload, 0, len(payload))[0])
            return []
        if ctype in _FEEDBACK:
            self.read_feedback(part)
            return []
        if ctype in _REPORT_PARTS:
            if self.enclosed_id is None:  # RFC 8098: the receipt names the message it is for
                match = _ORIGINAL_ID_IN_TEXT.search(part.payload(self.defects)[:65536].decode("latin-1"))
                self.enclosed_id = normalize_message_id(match.group(1)) if match else None
            return []
        if ctype in _ENCLOSED:
            self.read_enclosed(part, parent_type)
            return []
        if part.maintype == "multipart":
            boundary = part.params.get("boundary", "").strip()
            if depth >= MAX_DEPTH:
                self.defects.append(f"{part.path}: MIME nesting deeper than {MAX_DEPTH}; ignored")
                return []
            if boundary:
                ranges, notes = _split_multipart(part.data, part.body_start, part.end, boundary)
                self.defects.extend(f"{part.path}: {note}" for note in notes)
                if ranges or not notes:
                    return ranges
            else:
                self.defects.append(f"{part.path}: multipart without boundary")
            self.plain.append(part)  # read what is there as text
            return []
        disposition = part.disposition
        filename = self.filename(part)
        charset = part.params.get("charset")
        if charset and self.charset_hint is None and part.maintype == "text":
            self.charset_hint = charset
        # Text shown in the message: no attachment disposition and no file name, or plain
        # text explicitly marked inline (as mail clients display it, file name or not).
        if ctype == "text/plain" and (
            disposition == "inline" or (disposition != "attachment" and filename is None)
        ):
            self.plain.append(part)
            if filename is None:
                return []
        elif ctype == "text/html" and disposition != "attachment" and filename is None:
            self.html.append(part)
            return []
        size = len(part.payload(self.defects))
        self.attachments.append(Attachment(filename, ctype, size, disposition == "inline"))
        return []

    def filename(self, part: _Part) -> str | None:
        disposition = part.header("content-disposition") or ""
        raw = header_params(disposition).get("filename") if ";" in disposition else None
        if raw is None:
            raw = part.params.get("name")
        if raw is None:
            return None
        name = _clean(_decode(raw, self.charset_hint, f"{part.path} filename", self.defects))
        name = name.replace("\\", "/").rpartition("/")[2].strip()
        return name[:255] or None

    def read_delivery_status(self, part: _Part) -> None:
        text = decode_text(part.payload(self.defects)[:262144], "utf-8")[0]
        for block in _status_blocks(text)[:1000]:
            fields = dict(reversed(block))  # first occurrence wins
            if not ("final-recipient" in fields or "original-recipient" in fields):
                continue
            status = _STATUS_CODE.search(fields.get("status", ""))
            action = _clean(fields.get("action", "")).lower().split()
            self.delivery.append(
                DeliveryStatus(
                    final_recipient=_typed(fields.get("final-recipient")),
                    original_recipient=_typed(fields.get("original-recipient")),
                    action=action[0][:40] if action else None,
                    status=status.group() if status else None,
                    diagnostic=_typed(fields.get("diagnostic-code")),
                )
            )

    def keep_enclosed_headers(self, headers: list[tuple[str, str]]) -> None:
        if self.enclosed_headers:
            return
        for name, value in headers:
            if name in ENCLOSED_HEADERS and name not in self.enclosed_headers:
                self.enclosed_headers[name] = _clean(value[:HEADER_LIMIT])

    def read_feedback(self, part: _Part) -> None:
        if self.feedback is not None:
            return
        text = decode_text(part.payload(self.defects)[:65536], "utf-8")[0]
        fields: dict[str, list[str]] = {}
        for block in _status_blocks(text)[:20]:
            for name, value in block:
                fields.setdefault(name, []).append(value)
        recipients = [*fields.get("original-rcpt-to", ()), *fields.get("removal-recipient", ())]
        kind = _clean(fields.get("feedback-type", [""])[0]).lower().split()
        self.feedback = FeedbackReport(
            feedback_type=kind[0][:40] if kind else None,
            original_rcpt_to=tuple(found for found in map(_typed, recipients[:100]) if found),
            original_mail_from=_typed(fields.get("original-mail-from", [None])[0]),
            user_agent=_typed(fields.get("user-agent", [None])[0]),
        )

    def read_enclosed(self, part: _Part, parent_type: str) -> None:
        if part.encoding in _IDENTITY_ENCODINGS:
            data, start, end = part.data, part.body_start, part.end
        else:
            data = part.payload(self.defects)
            start, end = 0, len(data)
        if self.enclosed_id is None:
            headers, _, _ = _read_headers(data, start, end)
            raw_id = next((value for name, value in headers if name == "message-id"), "")
            self.enclosed_id = normalize_message_id(raw_id)
            self.keep_enclosed_headers(headers)
        if parent_type == "multipart/report":
            return  # the returned original of a report is not an attachment
        self.attachments.append(
            Attachment(self.filename(part), part.content_type, end - start, part.disposition == "inline")
        )


def _part_text(part: _Part, limit: int, defects: list[str]) -> str:
    payload = part.payload(defects)
    cut = len(payload) > limit
    text, note = decode_text(payload[:limit], part.params.get("charset"), final=not cut)
    if note:
        defects.append(f"{part.path}: {note}")
    if "\r" in text:  # CR CR LF is what text-mode writes on Windows make of CR LF
        text = text.replace("\r\r\n", "\n").replace("\r\n", "\n").replace("\r", "\n")
    return text


_FLOWED_BREAK = re.compile(r"(?m)(?<!^--) \n(?!>)")


def _unflow(text: str, params: dict[str, str]) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next line."""
    if params.get("format", "").lower() != "flowed":
        return text
    joiner = "" if params.get("delsp", "").lower() == "yes" else " "
    return _FLOWED_BREAK.sub(joiner, text) if " \n" in text else text


def _body_text(walk: _Walk, defects: list[str]) -> str:
    """Inline text/plain parts joined; the HTML parts as text when there is no plain one."""
    pieces: list[str] = []
    length = 0
    for part in walk.plain or walk.html:
        if part.content_type == "text/html":
            piece = html_to_text(_part_text(part, _HTML_BYTES_LIMIT, defects), TEXT_LIMIT)
        else:
            piece = _unflow(_part_text(part, _TEXT_BYTES_LIMIT, defects), part.params)
        if piece.strip():
            pieces.append(piece.strip("\n"))
            length += len(piece)
        if length >= TEXT_LIMIT:
            break
    return _storable("\n\n".join(pieces)[:TEXT_LIMIT])


# --- snippet --------------------------------------------------------------------------

_REPLY_INTRO = re.compile(
    r"(?:On\s.{0,200}\swrote:|-{2,}\s*Original Message\s*-{2,}|_{8,}|-{5,}\s*Forwarded message\s*-{5,})",
    re.I,
)


def make_snippet(text: str) -> str:
    """The opening words of the new text: quoted lines, reply headers and signature dropped."""
    kept: list[str] = []
    length = 0
    for line in text[:16384].split("\n"):
        if line in ("-- ", "--"):
            break
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):
            continue
        if len(stripped) < 300 and _REPLY_INTRO.fullmatch(stripped):
            break
        kept.append(stripped)
        length += len(stripped)
        if length > SNIPPET_LENGTH * 2:
            break
    snippet = " ".join(_CONTROL_CHARS.sub(" ", " ".join(kept)).split())
    snippet = snippet or " ".join(_CONTROL_CHARS.sub(" ", text[:2000]).split())
    if len(snippet) <= SNIPPET_LENGTH:
        return snippet
    cut = snippet[: SNIPPET_LENGTH - 1]
    if " " in cut[SNIPPET_LENGTH // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


# --- the message --------------------------------------------------------------------------

_ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc")
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})


def synthetic_message_id(raw: bytes, headers: Mapping[str, str]) -> str:
    """A stable id for a message without a usable Message-ID.

    Hashes the raw From, To, Date and Subject (whitespace-normalised, so refolding by a
    server does not change it) and the first 4 KB of the raw body with LF line ends.
    """
    digest = hashlib.sha256()
    for name in ("from", "to", "date", "subject"):
        digest.update(_to_bytes(" ".join(headers.get(name, "").split())))
        digest.update(b"\0")
    start = _read_headers(raw, 0, len(raw))[1]
    digest.update(raw[start : start + 2 * _HASH_BODY_BYTES].replace(b"\r\n", b"\n")[:_HASH_BODY_BYTES])
    return f"<{digest.hexdigest()}@{_SYNTHETIC_DOMAIN}>"


def is_synthetic_message_id(message_id: str) -> bool:
    """Whether `message_id` was made by `synthetic_message_id` (the message had none usable)."""
    return message_id.endswith(f"@{_SYNTHETIC_DOMAIN}>")


def _date(raw: str | None, defects: list[str]) -> datetime | None:
    if raw is None or not raw.strip():
        defects.append("missing Date header")
        return None
    try:
        value = parsedate_to_datetime(raw[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"unparseable Date {raw[:80]!r}")
        return None
    if value.tzinfo is None:  # '-0000': UTC with the local zone unknown
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        defects.append(f"Date out of range {raw[:80]!r}")
        return None


def _mailboxes(
    raw_headers: list[tuple[str, str]], name: str, hint: str | None, defects: list[str]
) -> tuple[Mailbox, ...]:
    values = [value for key, value in raw_headers if key == name]
    if not values:
        return ()
    lists = [parse_mailboxes(value, name, hint, defects) for value in values]
    if len(lists) == 1:
        return tuple(lists[0])
    addresses = {tuple(mailbox.address for mailbox in found) for found in lists}
    if name in ("from", "sender") and len(addresses) > 1:
        # Which one a client shows is a matter of luck: trust none.
        defects.append(f"conflicting {name} headers")
        return tuple(Mailbox(None, mailbox.name) for found in lists for mailbox in found)
    defects.append(f"{len(values)} {name} headers")
    if name in ("from", "sender"):
        return tuple(lists[0])
    return tuple(mailbox for found in lists for mailbox in found)


def _parse(raw: bytes) -> ParsedMessage:
    walk = _Walk()
    walk.run(raw)
    root = walk.root
    raw_headers = root.headers if root is not None else []
    defects: list[str] = []
    hint = walk.charset_hint

    first: dict[str, str] = {}
    for name, value in raw_headers:
        if name not in first and len(first) < MAX_HEADERS:
            first[name] = value
    headers: dict[str, str] = {}
    for name, value in first.items():
        if len(value) > HEADER_LIMIT and name not in _ADDRESS_HEADERS:
            defects.append(f"{name}: header truncated")
            value = value[:HEADER_LIMIT]
        if name in _ID_HEADERS:
            headers[name] = _clean(value)
        else:
            headers[name] = _clean(_decode(value[:ADDRESS_HEADER_LIMIT], hint, name, defects))

    message_id = normalize_message_id(first.get("message-id", ""))
    synthetic = message_id is None
    if synthetic and first.get("message-id", "").strip():
        defects.append(f"unusable Message-ID {first['message-id'][:80]!r}")
    from_ = _mailboxes(raw_headers, "from", hint, defects)
    if not from_:
        defects.append("missing From header")
    senders = _mailboxes(raw_headers, "sender", hint, defects)
    text = _body_text(walk, walk.defects)
    if b"\x00" in raw:
        defects.append("NUL bytes in message")
    return ParsedMessage(
        message_id=message_id or synthetic_message_id(raw, first),
        message_id_synthetic=synthetic,
        in_reply_to=tuple(_message_ids(first.get("in-reply-to", ""))),
        references=tuple(_message_ids(first.get("references", ""))),
        from_=from_,
        sender=senders[0] if senders else None,
        reply_to=_mailboxes(raw_headers, "reply-to", hint, defects),
        to=_mailboxes(raw_headers, "to", hint, defects),
        cc=_mailboxes(raw_headers, "cc", hint, defects),
        subject=headers.get("subject", ""),
        date=_date(first.get("date"), defects),
        text=text,
        snippet=make_snippet(text),
        attachments=tuple(walk.attachments),
        headers=MappingProxyType(headers),
        size=len(raw),
        defects=tuple(dict.fromkeys([*walk.defects, *defects])),
        content_type=root.content_type if root is not None else "text/plain",
        report_type=walk.report_type,
        delivery_status=tuple(walk.delivery),
        enclosed_message_id=walk.enclosed_id,
        enclosed_headers=walk.enclosed_headers,
        feedback=walk.feedback,
    )


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one message; never raises (what cannot be read is listed in `defects`)."""
    try:
        return _parse(bytes(raw))
    except Exception as error:  # the contract is a record for every input
        return _unreadable(bytes(raw), error)


def _unreadable(raw: bytes, error: Exception) -> ParsedMessage:
    return ParsedMessage(
        message_id=synthetic_message_id(raw, {}),
        message_id_synthetic=True,
        in_reply_to=(),
        references=(),
        from_=(),
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        subject="",
        date=None,
        text="",
        snippet="",
        attachments=(),
        headers=MappingProxyType({}),
        size=len(raw),
        defects=(f"unparseable message ({type(error).__name__})",),
    )
