"""Helpers templates call: dates, money and numbers through Babel, first names, text direction.

Each formats in the render's locale and the customer's timezone (see budget.py), with
native digits where the locale uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_precision
from jinja2.runtime import Undefined

from mailcrm.domain.values import from_minor_units
from mailcrm.errors import ValidationError
from mailcrm.render.budget import _state

_RTL_FALLBACK = frozenset({"ar", "fa", "he", "ur", "ps", "sd", "ug", "yi", "dv", "ckb"})
_NATIVE_DIGITS = {"arabext": "۰۱۲۳۴۵۶۷۸۹", "arab": "٠١٢٣٤٥٦٧٨٩"}


@lru_cache(maxsize=256)
def _locale(tag: str) -> Locale:
    return Locale.parse(tag.replace("_", "-"), sep="-")


def _known_locale(tag: str) -> bool:
    try:
        _locale(tag)
    except (UnknownLocaleError, ValueError):
        return False
    return True


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"unknown timezone {name!r}", hint="use an IANA name such as 'Asia/Bangkok'"
        ) from None


@lru_cache(maxsize=256)
def _digits(tag: str) -> dict[int, int] | None:
    """Digit translation for locales whose own numbering system is not Latin (Persian)."""
    system = getattr(_locale(tag), "default_numbering_system", "latn")
    native = _NATIVE_DIGITS.get(system)
    return str.maketrans("0123456789", native) if native else None


def _localise_digits(text: str, tag: str) -> str:
    table = _digits(tag)
    return text.translate(table) if table else text


@lru_cache(maxsize=256)
def text_direction(language: str) -> str:
    """The HTML `dir` value: rtl for Persian, Arabic, Hebrew, Urdu and other right-to-left scripts."""
    base = language.split("-")[0].lower()
    try:
        return "rtl" if _locale(language).character_order == "right-to-left" else "ltr"
    except (UnknownLocaleError, ValueError):
        return "rtl" if base in _RTL_FALLBACK else "ltr"


def _refuse(value: Any, helper: str) -> NoReturn:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises, naming the missing variable
    raise TypeError(f"{helper}() got {type(value).__name__} {value!r}")


def _as_datetime(value: Any, helper: str) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return (
                datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
            )
        except ValueError:
            pass
    _refuse(value, helper)


@lru_cache(maxsize=16384, typed=True)
def _format_date(value: date, pattern: str, tag: str, zone: str) -> str:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
        value = aware.astimezone(_zone(zone)).date()
    return _localise_digits(babel_format_date(value, pattern, locale=_locale(tag)), tag)


@lru_cache(maxsize=16384)
def _format_datetime(value: datetime, pattern: str, tag: str, zone: str) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
    text = babel_format_datetime(aware, pattern, tzinfo=_zone(zone), locale=_locale(tag))
    return _localise_digits(text, tag)


@lru_cache(maxsize=16384)
def _format_money(amount_minor: int, currency: str, tag: str) -> str:
    amount = from_minor_units(amount_minor, currency)
    fast = _money_formatter(currency, tag) if amount >= 0 else None
    if fast is not None:
        return _localise_digits(fast(amount), tag)
    return _localise_digits(_babel_money(amount, currency, tag), tag)


def _babel_money(amount: Decimal, currency: str, tag: str) -> str:
    return format_currency(amount, currency, locale=_locale(tag), numbering_system="default")


_MONEY_PROBES = ("0", "1", "12", "999", "1000", "123456", "1234567.891", "98765432109.5")


@lru_cache(maxsize=1024)
def _money_formatter(currency: str, tag: str) -> Callable[[Decimal], str] | None:
    """Babel's currency format for this locale as a plain string template, when that is exact.

    Babel re-reads the pattern and symbols on every call (about 10 µs); most locales are
    "prefix, digits grouped by three, suffix", so the template is read once from a sample
    and checked against Babel on several amounts. Locales it cannot copy exactly (Indian
    grouping, for one) keep using Babel.
    """
    digits = get_currency_precision(currency)
    quantum = Decimal(1).scaleb(-digits)
    sample = _babel_money(Decimal("1234567.891").quantize(quantum), currency, tag)
    found = [index for index, char in enumerate(sample) if char.isdigit()]
    if not found:
        return None
    prefix, number, suffix = sample[: found[0]], sample[found[0] : found[-1] + 1], sample[found[-1] + 1 :]
    separators = {",": number[1], ".": number[-digits - 1] if digits else ""}
    table = str.maketrans(separators)
    layout = f",.{digits}f"

    def fast(amount: Decimal) -> str:
        return prefix + format(amount, layout).translate(table) + suffix

    for probe in _MONEY_PROBES:
        amount = Decimal(probe).quantize(quantum)
        if fast(amount) != _babel_money(amount, currency, tag):
            return None
    return fast


def format_date(value: Any, format: str = "long") -> str:
    """A date (or the local date of a date-time) in the render language and customer timezone."""
    state = _state()
    return _format_date(_as_datetime(value, "format_date"), str(format), state.locale_tag, state.zone)


def format_datetime(value: Any, format: str = "medium") -> str:
    """A date-time (naive means UTC) shown in the customer's timezone, in the render language."""
    moment = _as_datetime(value, "format_datetime")
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    state = _state()
    return _format_datetime(moment, str(format), state.locale_tag, state.zone)


def format_money(amount_minor: Any, currency: Any) -> str:
    """An amount in minor units (cents, satang) with its currency, in the render language."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        _refuse(amount_minor, "format_money")
    if not isinstance(currency, str):
        _refuse(currency, "format_money")
    return _format_money(amount_minor, currency.upper(), _state().locale_tag)


def format_number(value: Any) -> str:
    """A number with the render language's separators and digits."""
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        _refuse(value, "format_number")
    return _format_number(value, _state().locale_tag)


@lru_cache(maxsize=4096, typed=True)
def _format_number(value: int | float | Decimal, tag: str) -> str:
    return _localise_digits(format_decimal(value, locale=_locale(tag), numbering_system="default"), tag)


# Titles dropped before picking a first name: separate words, compared case-insensitively.
_TITLES = frozenset(
    {
        "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "mx", "mx.", "dr", "dr.", "prof", "prof.",
        "sir", "madam", "herr", "frau", "m.", "mme", "mme.",
        "นาย", "นาง", "นางสาว", "น.ส.", "คุณ", "ดร.",
        "آقای", "آقا", "خانم", "دکتر", "مهندس", "سید", "سیده", "حاج", "حاجی",
        "លោក", "លោកស្រី", "អ្នកស្រី", "កញ្ញា", "ឯកឧត្តម", "លោកជំទាវ",
    }
)  # fmt: skip
_SUFFIXES = frozenset(
    {"jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "phd", "ph.d.", "md", "m.d.", "mba", "esq."}
)
# Thai titles often written joined to the name ("คุณสมชาย"): removed as prefixes.
_JOINED_TITLES = ("นางสาว", "คุณ", "ดร.")


def _family_name_first(ch: str) -> bool:
    """CJK and Khmer names are written family name first: use the full name."""
    code = ord(ch)
    return (
        0x3040 <= code <= 0x30FF  # kana
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF  # CJK ideographs
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3FFFF
        or 0xAC00 <= code <= 0xD7AF  # Hangul
        or 0x1100 <= code <= 0x11FF
        or 0x1780 <= code <= 0x17FF  # Khmer
        or 0x19E0 <= code <= 0x19FF
    )


@lru_cache(maxsize=65536)
def first_name(name: Any) -> str:
    """How to address someone: the given name, or the full name where the family name comes first.

    Thai, Persian and Western names give the first word after any title ("นาย", "Dr.",
    "سید"); "Müller, Anna" gives "Anna"; Chinese, Japanese, Korean and Khmer names give
    the whole name. An empty name, or one that is an email address, gives "".
    """
    if not isinstance(name, str):
        if name is None:
            return ""
        _refuse(name, "first_name")
    text = " ".join(name.split())
    if not text or "@" in text:
        return ""
    if "," in text:  # "Family, Given", unless what follows is a suffix ("Anna Lee, PhD")
        family, _, given = text.partition(",")
        given = given.strip()
        text = family.strip() if not given or given.lower() in _SUFFIXES else given
    words = text.split(" ")
    while len(words) > 1 and words[0].lower() in _TITLES:
        words = words[1:]
    if _family_name_first(words[0][0]):
        return " ".join(words)
    word = words[0]
    for title in _JOINED_TITLES:
        if word.startswith(title) and len(word) > len(title) + 1:
            word = word[len(title) :]
            break
    if len(words) > 1 and word.endswith(".") and len(word) <= 3:  # an initial: "J. Smith"
        return " ".join(words)
    return word
