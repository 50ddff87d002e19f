"""Validation and normalisation of the scalar values a customer record holds.

Each function takes user text and returns the stored form, or raises
`ValidationError` with a message that names the bad value and the expected shape.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies

from mailcrm.errors import ValidationError

# The longest text one field may hold (a spreadsheet cell holds 32,767 characters): longer
# is a broken or hostile file, refused rather than stored.
MAX_FIELD_CHARS = 65_536

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TAG = re.compile(r"[\w][\w .:/+-]{0,62}", re.UNICODE)
# C0 and C1 control characters and DEL, except tab, LF and CR (whitespace a field folds or
# keeps); lone surrogates (undecodable bytes in a command line argument) are no text either.
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x1B: "ESC", 0x7F: "DEL", 0x9B: "CSI"}
# Letters and symbols that draw nothing: Hangul fillers and the blank Braille pattern.
_BLANK_GRAPHICS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cf", "Cc"})


def character_label(char: str) -> str:
    """`U+001B (ESC)`: how an error names a character it must not print."""
    code = ord(char)
    name = _CONTROL_NAMES.get(code)
    return f"U+{code:04X} ({name})" if name else f"U+{code:04X}"


def check_text(text: str) -> str:
    """`text` unchanged, or `ValidationError` when it holds a control character.

    Customer text typed or imported by a person is refused rather than cleaned: a NUL or
    an escape sequence in a CSV cell means a broken or hostile file whose owner should
    see it, and the same rule on every store (PostgreSQL cannot store NUL, SQLite can)
    keeps them identical. Mail from outside, which nobody can fix, is cleaned instead.
    Tab and line breaks are allowed; one-line fields fold them into spaces.
    """
    if text.isprintable():  # the common case, ten times faster than the search
        return text
    found = FORBIDDEN_CHARACTERS.search(text)
    if found is not None:
        char = found.group()
        if "\ud800" <= char <= "\udfff":
            raise ValidationError(
                f"contains a byte that is not UTF-8 text at character {found.start() + 1}",
                hint="type the text again, or set the terminal to UTF-8",
            )
        raise ValidationError(
            f"contains a control character, {character_label(char)}, at character {found.start() + 1}",
            hint="remove control characters (NUL, ESC, ...): names and fields are plain text",
        )
    return text


def _blank(char: str) -> bool:
    """Spaces and format characters (zero-width space and joiners, BOM, bidi marks)."""
    return unicodedata.category(char) in _BLANK_CATEGORIES or char in _BLANK_GRAPHICS


def one_line(text: str) -> str:
    """Whitespace runs folded into one space, and blank characters trimmed off both ends
    (a zero-width non-joiner inside a Persian or Khmer word is spelling and stays)."""
    folded = " ".join(text.split())
    start, end = 0, len(folded)
    while start < end and _blank(folded[start]):
        start += 1
    while end > start and _blank(folded[end - 1]):
        end -= 1
    return folded[start:end]


def has_visible_character(text: str) -> bool:
    """Whether anyone reading `text` would see something: a letter, digit, punctuation or
    symbol that draws (combining marks alone, blanks and format characters do not)."""
    return any(unicodedata.category(char)[0] in "LNPS" and char not in _BLANK_GRAPHICS for char in text)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=4096)
def normalize_timezone(raw: str) -> str:
    """An IANA zone name such as `Asia/Bangkok`; case-insensitive on input."""
    text = raw.strip()
    if text in _zones():
        return text
    by_lower = {zone.lower(): zone for zone in _zones()}
    if text.lower() in by_lower:
        return by_lower[text.lower()]
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"unknown timezone {raw!r}",
            hint="use an IANA name such as 'Asia/Bangkok' or 'Europe/Berlin'",
        ) from None
    return text


@lru_cache(maxsize=1024)
def normalize_language(raw: str) -> str:
    """A BCP 47 tag known to CLDR, in canonical case (`en`, `zh-Hans`, `pt-BR`)."""
    text = raw.strip().replace("_", "-")
    try:
        locale = Locale.parse(text, sep="-")
    except (UnknownLocaleError, ValueError):
        raise ValidationError(
            f"unknown language tag {raw!r}",
            hint="use a BCP 47 tag such as 'en', 'th', 'zh-Hans', 'fa' or 'km'",
        ) from None
    parts = [locale.language]
    if locale.script:
        parts.append(locale.script)
    if locale.territory:
        parts.append(locale.territory)
    return "-".join(parts)


def parse_date(raw: str, what: str = "date") -> date:
    """An ISO 8601 calendar date (`1990-02-28`)."""
    text = raw.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"invalid {what} {raw!r}", hint="write dates as YYYY-MM-DD, e.g. 1990-02-28"
        ) from None


EARLIEST = date(1900, 1, 1)
LATEST = date(2200, 12, 31)
"""The calendar dates a purchase (or any dated fact) may fall on. Wide enough for every
real record, narrow enough that converting between zones never leaves `datetime`'s
years 1..9999: `0001-01-01` or `9999-12-31` are typos or placeholders, never purchases."""

DATE_RANGE = f"{EARLIEST.isoformat()}..{LATEST.isoformat()}"


def parse_when(raw: str, what: str = "date") -> date | datetime:
    """An ISO 8601 date or date-time, kept as written: a `date` for a date without a time,
    a naive `datetime` for a wall time without an offset, an aware one with an offset.

    Which zone a date or a wall time belongs to is not this function's business: for a
    purchase it is the customer's, known only once the customer is resolved. Values outside
    `EARLIEST`..`LATEST` are refused, so no later zone conversion can overflow.
    """
    text = raw.strip()
    try:
        value: date | datetime = date.fromisoformat(text)
    except ValueError:
        value = _date_time(text, raw, what)
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day <= LATEST:
        raise ValidationError(
            f"{what} {raw!r} is outside {DATE_RANGE}",
            hint=f"write a date between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
        )
    return value


def _date_time(text: str, raw: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"invalid {what} {raw!r}",
            hint="write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]",
        ) from None


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache(maxsize=512)
def normalize_currency(raw: str) -> str:
    """An ISO 4217 code such as `THB`."""
    code = raw.strip().upper()
    if code not in _currencies():
        raise ValidationError(f"unknown currency {raw!r}", hint="use an ISO 4217 code such as USD, EUR, THB")
    return code


def to_minor_units(raw: str | Decimal | int, currency: str) -> int:
    """Amount in the currency's minor unit (cents, satang); refuses extra precision."""
    text = str(raw).strip()
    if isinstance(raw, str) and "," in text:
        if not _THOUSANDS.fullmatch(text):
            raise ValidationError(
                f"ambiguous amount {raw!r}", hint="write the amount with a decimal point, e.g. 1250.50"
            )
        text = text.replace(",", "")
    try:
        amount = Decimal(text) if isinstance(raw, str) else Decimal(raw)
    except InvalidOperation:
        raise ValidationError(f"invalid amount {raw!r}", hint="write e.g. 1250.50") from None
    if not amount.is_finite():
        raise ValidationError(f"invalid amount {raw!r}", hint="write e.g. 1250.50")
    digits = get_currency_precision(currency)
    scaled = amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise ValidationError(f"amount {raw!r} has more decimals than {currency} allows ({digits})")
    return int(scaled)


def from_minor_units(minor: int, currency: str) -> Decimal:
    """The inverse of `to_minor_units`."""
    return Decimal(minor).scaleb(-get_currency_precision(currency))


def normalize_tag(raw: str) -> str:
    """Tags are case-insensitive labels: stored lower-case, trimmed, at most 63 characters."""
    text = " ".join(raw.split()).lower()
    if not _TAG.fullmatch(text):
        raise ValidationError(
            f"invalid tag {raw!r}",
            hint="tags are 1-63 letters, digits, spaces or . : / + - and start with a letter or digit",
        )
    return text


def split_tags(raw: str) -> list[str]:
    """`"vip, seminar;Referral"` → `["vip", "seminar", "referral"]`, duplicates removed."""
    seen: dict[str, None] = {}
    for part in re.split(r"[,;|]", raw):
        if part.strip():
            seen[normalize_tag(part)] = None
    return list(seen)
