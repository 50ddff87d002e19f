"""Outgoing messages as RFC 5322 bytes, written directly rather than through `email.message`.

Building is on the send path's hot loop: the stdlib's `EmailMessage` under
`policy=default` manages about 450 messages/s on one core, far below the send target,
so the bytes are produced here: encoded-words (RFC 2047) for headers that are not
plain ASCII, folded at 78 characters between whole encoded-words or whole tokens,
quoted-printable or base64 bodies (RFC 2045), CRLF line endings throughout.

Every value that reaches a header is checked first. Python 3.11's email package predates
several header-injection fixes (CVE-2024-6923 and later), so nothing here relies on it:
CR, LF, NUL, the other C0 controls (TAB excepted), DEL and the Unicode line separators are
refused in every header name, value, display name and address with `HeaderInjectionError`.
Text that a reader's parser could mistake for an encoded-word (`=?...?=`) is itself
encoded, so it reaches the reader as the literal text it was.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType

from mailcrm.errors import ValidationError

MAX_LINE = 78  # RFC 5322 §2.1.1: SHOULD
_MAX_TOKEN = 900  # an unbreakable token (URL, Message-ID) must keep its line under 998
_MAX_WORD = 75  # RFC 2047 §2: an encoded-word is at most 75 characters

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext: printable ASCII but ':'
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ATOMS = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_ADDR_SPEC = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
# RFC 6531/6532: a local part may also hold non-ASCII characters (sent with SMTPUTF8).
_UTEXT = rf"(?:[{_ATEXT}]|[^\x00-\x9f])"
_UTF8_ADDR_SPEC = re.compile(rf"{_UTEXT}+(?:\.{_UTEXT}+)*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")  # printable ASCII without '<' and '>'
_URL_TOKEN = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")

# Headers build_message writes itself, and ones no caller may add (recipients, structure).
_RESERVED = frozenset(
    {
        "date", "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "message-id",
        "in-reply-to", "references", "list-unsubscribe", "list-unsubscribe-post",
        "mime-version", "content-type", "content-transfer-encoding", "return-path",
        "resent-to", "resent-cc", "resent-bcc", "resent-from", "resent-sender",
    }
)  # fmt: skip

# Q encoding (RFC 2047 §4.2) restricted to the characters allowed in a phrase (§5(3)),
# so one encoder serves Subject, display names and any other header.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_TABLE = tuple(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256))
_Q_PREFIX = "=?utf-8?q?"
_B_PREFIX = "=?utf-8?b?"
_WORD_OVERHEAD = len(_Q_PREFIX) + 2

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class HeaderInjectionError(ValidationError):
    """A header name or value holds a character that could end the header line or add one."""


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: an addr-spec (IDNA domain already applied; the local part ASCII, or UTF-8
    for SMTPUTF8) and an optional display name."""

    email: str
    name: str = ""


def _check_controls(header: str, what: str, value: str) -> None:
    found = _CONTROL.search(value)
    if found:
        raise HeaderInjectionError(
            f"header {header!r}: {what} contains a line break or control character "
            f"(U+{ord(found.group()):04X}) at position {found.start()}",
            hint="remove line breaks and control characters from names, subjects and addresses",
        )


def _utf8(header: str, value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"header {header!r}: the text is not valid Unicode (lone surrogate)") from None


def make_message_id(domain: str) -> str:
    """A new `<random@domain>` Message-ID; 128 random bits make it unique without coordination."""
    _check_controls("Message-ID", "domain", domain)
    if not _DOMAIN.fullmatch(domain):
        raise ValidationError(
            f"invalid Message-ID domain {domain!r}", hint="give an ASCII (IDNA) domain name"
        )
    token = base64.b32encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii").lower()
    return f"<{token}@{domain}>"


# --- encoded-words --------------------------------------------------------------------------


def _q_words(data: bytes, first: int, rest: int) -> list[str]:
    """Q encoded-words holding whole UTF-8 characters; the first at most `first` characters long."""
    words: list[str] = []
    limit = first - _WORD_OVERHEAD
    current: list[str] = []
    length = 0
    index = 0
    size = len(data)
    while index < size:
        end = index + 1
        while end < size and data[end] & 0xC0 == 0x80:
            end += 1
        piece = "".join([_Q_TABLE[b] for b in data[index:end]])
        if length + len(piece) > limit and current:
            words.append(_Q_PREFIX + "".join(current) + "?=")
            current, length, limit = [], 0, rest - _WORD_OVERHEAD
        current.append(piece)
        length += len(piece)
        index = end
    if current or not words:
        words.append(_Q_PREFIX + "".join(current) + "?=")
    return words


def _b_words(data: bytes, first: int, rest: int) -> list[str]:
    """B encoded-words holding whole UTF-8 characters; the first at most `first` characters long."""
    words: list[str] = []
    chunk = (first - _WORD_OVERHEAD) // 4 * 3
    index = 0
    size = len(data)
    while True:
        end = min(index + chunk, size)
        while index < end < size and data[end] & 0xC0 == 0x80:
            end -= 1
        if end == index and index < size:  # budget below one character: take one anyway
            end = index + 1
            while end < size and data[end] & 0xC0 == 0x80:
                end += 1
        encoded = binascii.b2a_base64(data[index:end], newline=False).decode("ascii")
        words.append(_B_PREFIX + encoded + "?=")
        index = end
        chunk = (rest - _WORD_OVERHEAD) // 4 * 3
        if index >= size:
            return words


@lru_cache(maxsize=8192)
def _encoded_words(header: str, text: str, first: int) -> tuple[str, ...]:
    """`text` as encoded-words (Q when mostly ASCII, else B, whichever is shorter)."""
    data = _utf8(header, text)
    escaped = sum(1 for b in data if b not in _Q_SAFE and b != 0x20)
    q_cost = len(data) + 2 * escaped
    b_cost = (len(data) + 2) // 3 * 4
    first = max(first, _WORD_OVERHEAD + 12)  # room for one 4-byte character in either encoding
    if q_cost <= b_cost:
        return tuple(_q_words(data, first, _MAX_WORD))
    return tuple(_b_words(data, first, _MAX_WORD))


def _fold(prefix: str, tokens: Sequence[str], separator: str = " ") -> str:
    """Join unbreakable tokens after `prefix`, starting a continuation line where one would overflow."""
    lines: list[str] = []
    line = prefix + tokens[0]
    for token in tokens[1:]:
        if len(line) + len(separator) + len(token) <= MAX_LINE:
            line += separator + token
        else:
            lines.append(line + separator.rstrip())
            line = " " + token
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _plain_words(prefix_len: int, text: str) -> list[str] | None:
    """The words of `text` when it can be sent as is: single-spaced printable ASCII that fits."""
    if not text or not text.isascii() or "=?" in text or text.strip(" ") != text or "  " in text:
        return None
    if not text.isprintable():  # TAB, the only control allowed through, is easier encoded
        return None
    words = text.split(" ")
    if len(words[0]) + prefix_len > MAX_LINE or any(len(word) >= MAX_LINE for word in words):
        return None
    return words


def _unstructured(name: str, value: str) -> str:
    """`Name: value` for free text (Subject and the like), folded, encoded when needed."""
    _check_controls(name, "value", value)
    if not value:
        return f"{name}:\r\n"
    prefix = f"{name}: "
    words = _plain_words(len(prefix), value)
    if words is None:
        words = list(_encoded_words(name, value, MAX_LINE - len(prefix)))
    return _fold(prefix, words)


def _mailbox(header: str, address: Address) -> list[str]:
    """The tokens of one mailbox: display name (atoms, quoted-string or encoded-words), `<addr>`."""
    _check_controls(header, "display name", address.name)
    _check_controls(header, "address", address.email)
    email = address.email
    if email.isascii():
        valid = _ADDR_SPEC.fullmatch(email) is not None
    else:  # written as UTF-8 (RFC 6532); the sender then needs a server offering SMTPUTF8
        valid = email.isprintable() and _UTF8_ADDR_SPEC.fullmatch(email) is not None
    if not valid or len(email.encode("utf-8")) > 254:
        raise ValidationError(
            f"header {header!r}: {email!r} is not an address this sender can write",
            hint="addresses are stored normalised (IDNA domain); a non-ASCII local part needs SMTPUTF8",
        )
    name = address.name
    if not name:
        return [address.email]
    prefix_len = len(header) + 2
    if name.isascii() and "=?" not in name:
        words = _plain_words(prefix_len, name)
        if words is not None and _ATOMS.fullmatch(name):
            return [*words, f"<{address.email}>"]
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if name.isprintable() and prefix_len + len(quoted) <= MAX_LINE:
            return [quoted, f"<{address.email}>"]
    return [*_encoded_words(header, name, MAX_LINE - prefix_len), f"<{address.email}>"]


@lru_cache(maxsize=1024)
def _address_header(name: str, address: Address) -> str:
    """`Name: mailbox`, folded; cached, as From repeats for every email of a salesperson."""
    return _fold(f"{name}: ", _mailbox(name, address))


def _msg_id(header: str, value: str) -> str:
    _check_controls(header, "Message-ID", value)
    if not _MSG_ID.fullmatch(value) or len(value) > _MAX_TOKEN:
        raise ValidationError(
            f"header {header!r}: {value!r} is not a Message-ID", hint="write it as <id@domain>"
        )
    return value


def _url(header: str, value: str, scheme: tuple[str, ...]) -> str:
    _check_controls(header, "URL", value)
    if not value.lower().startswith(scheme) or not _URL_TOKEN.fullmatch(value) or len(value) > _MAX_TOKEN:
        raise ValidationError(
            f"header {header!r}: {value!r} is not a usable {' or '.join(scheme)} URL",
            hint="percent-encode spaces and non-ASCII characters; at most 900 characters",
        )
    return value


def rfc5322_date(value: datetime) -> str:
    """RFC 5322 date-time; a naive value is taken as UTC (the store's convention)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{hours:02d}{minutes:02d}"
    )


# --- bodies ---------------------------------------------------------------------------------


def _body(what: str, text: str) -> tuple[bytes, bytes]:
    """(transfer encoding, encoded body): QP when few bytes need escaping, else base64 (shorter)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not normalised.endswith("\r\n"):
        normalised += "\r\n"
    try:
        data = normalised.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} body is not valid Unicode (lone surrogate)") from None
    if data.isascii() or _high_bytes(data) * 6 < len(data):
        return b"quoted-printable", binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return b"base64", base64.encodebytes(data).replace(b"\n", b"\r\n")


_HIGH = bytes(range(0x80, 0x100))


def _high_bytes(data: bytes) -> int:
    return len(data) - len(data.translate(None, _HIGH))


def _part(subtype: bytes, encoding: bytes, body: bytes) -> bytes:
    return (
        b"Content-Type: text/" + subtype + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body
    )


# --- the message ----------------------------------------------------------------------------


def build_message(
    *,
    sender: Address,
    to: Address,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    list_unsubscribe_url: str | None = None,
    list_unsubscribe_mailto: str | None = None,
    reply_to: Address | None = None,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> bytes:
    """The complete message (headers and body) as bytes with CRLF line endings.

    `in_reply_to` is also appended to `references` when missing, so a follow-up threads
    under the email it follows. `List-Unsubscribe-Post` (RFC 8058 one-click) is written
    only with an https URL, as the RFC requires.
    """
    head = [
        f"Date: {rfc5322_date(date)}\r\n",
        _address_header("From", sender),
        _address_header("To", to),
    ]
    if reply_to is not None:
        head.append(_address_header("Reply-To", reply_to))
    head.append(_unstructured("Subject", subject))
    head.append(f"Message-ID: {_msg_id('Message-ID', message_id)}\r\n")
    chain = [_msg_id("References", item) for item in references]
    if in_reply_to is not None:
        head.append(f"In-Reply-To: {_msg_id('In-Reply-To', in_reply_to)}\r\n")
        if in_reply_to not in chain:
            chain.append(in_reply_to)
    if chain:
        head.append(_fold("References: ", chain))
    unsubscribe = []
    if list_unsubscribe_url is not None:
        unsubscribe.append(f"<{_url('List-Unsubscribe', list_unsubscribe_url, ('https://', 'http://'))}>")
    if list_unsubscribe_mailto is not None:
        unsubscribe.append(f"<{_url('List-Unsubscribe', list_unsubscribe_mailto, ('mailto:',))}>")
    if unsubscribe:
        head.append(_fold("List-Unsubscribe: ", unsubscribe, separator=", "))
        if list_unsubscribe_url is not None and list_unsubscribe_url.lower().startswith("https://"):
            head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    for name, value in extra_headers.items():
        _check_controls(name, "header name", name)
        if not _FIELD_NAME.fullmatch(name):
            raise ValidationError(f"invalid header name {name!r}", hint="use printable ASCII without ':'")
        if name.lower() in _RESERVED:
            raise HeaderInjectionError(
                f"header {name!r} cannot be given as an extra header",
                hint="recipients, threading and structure headers are written by build_message",
            )
        head.append(_unstructured(name, value))
    head.append("MIME-Version: 1.0\r\n")
    header_bytes = "".join(head).encode("utf-8")  # ASCII but for a non-ASCII local part (RFC 6532)

    text_encoding, text_body = _body("text", text)
    if html is None:
        return header_bytes + _part(b"plain", text_encoding, text_body)
    html_encoding, html_body = _body("html", html)
    boundary = _boundary(text_body, html_body)
    return b"".join(
        (
            header_bytes,
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
            b"--" + boundary + b"\r\n",
            _part(b"plain", text_encoding, text_body),
            b"\r\n--" + boundary + b"\r\n",  # the CRLF before "--" belongs to the delimiter
            _part(b"html", html_encoding, html_body),
            b"\r\n--" + boundary + b"--\r\n",
        )
    )


def _boundary(*bodies: bytes) -> bytes:
    """A random boundary; "=_" cannot occur in QP or base64 output, and the check makes sure."""
    while True:
        boundary = b"=_" + secrets.token_hex(12).encode("ascii")
        if not any(boundary in body for body in bodies):
            return boundary
