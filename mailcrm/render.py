"""Email templates: one subject, text and HTML per template and language, rendered in a sandbox.

Layout: `templates/<name>/<language>.subject.j2`, `<language>.txt.j2` (optional when the
HTML exists: the text part is then made from the HTML) and `<language>.html.j2` (optional).
Folders starting with `_` hold shared layouts, not templates.

Templates are written by salespeople and may be hostile, so rendering is sandboxed
(jinja2's `ImmutableSandboxedEnvironment`, jinja2 >= 3.1.6 for CVE-2025-27516) and bounded:
no attribute starting with `_`, no `format`/`format_map`, a short list of string methods
and filters, capped `range`, `*`, `**`, call count, loop iterations and output size.
Any failure (a missing variable under `StrictUndefined`, a refused attribute, a limit)
raises `TemplateError` naming the file and line, so one bad email fails alone and the
process goes on. Compiled templates are cached per (name, language choice).
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib.metadata import version as package_version
from pathlib import Path
from types import GeneratorType, TracebackType
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_precision
from jinja2 import FileSystemLoader, StrictUndefined, nodes, pass_eval_context
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner

from mailcrm.domain.html_text import html_to_text
from mailcrm.domain.values import from_minor_units
from mailcrm.errors import MailcrmError, ValidationError

JINJA2_MINIMUM = (3, 1, 6)

MAX_OUTPUT = 1024 * 1024  # characters per rendered part
MAX_STRING = 1024 * 1024  # characters in a string passed to a call or made by '*'
MAX_SEQUENCE = 10_000  # items in a list made by '*'
MAX_RANGE = 10_000  # items in one range()
MAX_STEPS = 100_000  # calls, loop iterations and range items per email
MAX_POWER_BITS = 4096  # size of an integer made by '**'

_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_PART_FILE = re.compile(r"(?P<language>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.(?P<part>subject|txt|html)\.j2")
_RTL_FALLBACK = frozenset({"ar", "fa", "he", "ur", "ps", "sd", "ug", "yi", "dv", "ckb"})
_NATIVE_DIGITS = {"arabext": "۰۱۲۳۴۵۶۷۸۹", "arab": "٠١٢٣٤٥٦٧٨٩"}


class TemplateError(MailcrmError):
    """A template cannot be compiled or rendered; the message names the file and line."""

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.template = template
        self.path = path
        self.line = line
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(where + message, hint=hint)


def _parse_version(text: str) -> tuple[int, ...]:
    numbers = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if numbers is None:
        return (0,)
    return tuple(int(part or 0) for part in numbers.groups())


def check_jinja2_version(installed: str) -> None:
    """Refuse a jinja2 older than 3.1.6: earlier sandboxes can be escaped (CVE-2025-27516 and older)."""
    if _parse_version(installed) < JINJA2_MINIMUM:
        raise TemplateError(
            f"jinja2 {installed} is installed; templates need jinja2 >= 3.1.6 (sandbox escape fixes)",
            hint="pip install 'jinja2>=3.1.6'",
        )


check_jinja2_version(package_version("jinja2"))


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One rendered email: the template and language used, and the three parts."""

    template: str
    language: str
    subject: str
    text: str
    html: str | None


# --- per-render state: the formatting locale, the timezone, and the work budget -------------


class _LimitError(Exception):
    """A template exceeded a resource limit (turned into TemplateError with its location)."""


@dataclass(slots=True)
class _RenderState:
    locale_tag: str  # formatting locale of the helpers
    zone: str  # the customer's timezone
    steps: int = MAX_STEPS  # work left for this email


_STATE: ContextVar[_RenderState | None] = ContextVar("mailcrm_render_state", default=None)


def _state() -> _RenderState:
    state = _STATE.get()
    if state is None:
        return _RenderState("en", "UTC")
    return state


def _charge(steps: int, what: str) -> None:
    state = _STATE.get()
    if state is None:
        return
    state.steps -= steps
    if state.steps < 0:
        raise _LimitError(f"too much work in one email ({what}); the limit is {MAX_STEPS} steps")


# --- helpers available to templates --------------------------------------------------------


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


# --- the sandbox ----------------------------------------------------------------------------

# String methods a template may call; none can make a string much longer than its input.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha",
        "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit",
        "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    }
)  # fmt: skip
_DICT_ATTRIBUTES = frozenset(dir(dict))
_UNSAFE_ATTRIBUTES = frozenset({"format", "format_map", "mro"})
# Filters kept from jinja2's defaults: those whose output is bounded by their input.
# Left out: attr (CVE-2025-27516), format, center, indent, batch, slice, pprint, random, ...
_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "forceescape", "groupby", "int", "items", "join", "last", "length", "list", "lower", "map",
    "max", "min", "reject", "rejectattr", "reverse", "round", "safe", "select", "selectattr",
    "sort", "string", "striptags", "sum", "title", "tojson", "trim", "truncate", "unique",
    "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
)  # fmt: skip


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise _LimitError(f"range() of {len(numbers)} items; the limit is {MAX_RANGE}")
    _charge(len(numbers), "range")
    return numbers


def _metered(iterable: Iterable[Any]) -> Iterator[Any]:
    """Wraps every for-loop's sequence, so nested loops cannot spin without bound."""
    state = _STATE.get()
    for item in iterable:
        if state is not None:
            state.steps -= 1
            if state.steps < 0:
                raise _LimitError(f"too many loop iterations; the limit is {MAX_STEPS} steps per email")
        yield item


@pass_eval_context
def _replace(eval_ctx: EvalContext, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
    text, before, after = str(value), str(old), str(new)
    matches = len(text) + 1 if not before else text.count(before)
    if len(text) + matches * max(0, len(after) - len(before)) > MAX_STRING:
        raise _LimitError(f"replace() would make a string over {MAX_STRING} characters")
    return FILTERS["replace"](eval_ctx, value, old, new, count)


def _check_size(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise _LimitError(f"a string of {len(value)} characters; the limit is {MAX_STRING}")
    if isinstance(value, list | tuple) and len(value) > MAX_SEQUENCE * 10:
        raise _LimitError(f"a list of {len(value)} items is too long")


class _MailSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with mailcrm's limits; see the module docstring."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in _UNSAFE_ATTRIBUTES:
            return False
        if isinstance(obj, str):
            return attr in _STR_METHODS
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Context values are mostly dicts: look the key up without first failing an attribute
        # lookup (same result as the base class, which tries the attribute first).
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Fail at once, rather than with an undefined value that a list or test could swallow.
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is not allowed"
        )

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        return None  # str.format is refused outright (is_safe_attribute), not sandboxed

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise _LimitError("'%' string formatting is not allowed in templates; use filters")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    limit = MAX_STRING if isinstance(sequence, str) else MAX_SEQUENCE
                    if len(sequence) * times > limit:
                        raise _LimitError(
                            f"'*' would make {len(sequence) * times} items; the limit is {limit}"
                        )
        if (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and abs(left) > 1
            and abs(left).bit_length() * right > MAX_POWER_BITS
        ):
            raise _LimitError(f"'**' result too large; the limit is {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        state = _STATE.get()
        if state is not None:
            state.steps -= 1
            if state.steps < 0:
                raise _LimitError(f"too many calls; the limit is {MAX_STEPS} steps per email")
        for value in args:
            if isinstance(value, str | list | tuple):
                _check_size(value)
        for key, value in kwargs.items():
            if isinstance(value, str | list | tuple) and key not in ("_loop_vars", "_block_vars"):
                _check_size(value)
        if id(obj) in _DIRECT_HELPERS:  # mailcrm's own helpers take no context: skip the lookup
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            return obj(*args, **kwargs)
        if not self.is_safe_callable(obj):
            raise SecurityError(f"{obj!r} is not safely callable")
        return context.call(obj, *args, **kwargs)

    def get_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        _charge(1000, "includes")
        return super().get_template(*args, **kwargs)

    def select_template(self, *args: Any, **kwargs: Any) -> jinja2.Template:
        _charge(1000, "includes")
        return super().select_template(*args, **kwargs)

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        for loop in list(source.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, "_metered", [], [], None, None, lineno=loop.lineno)
        return super()._generate(source, name, filename, defer_init)


_DIRECT_HELPERS = frozenset(
    map(id, (first_name, format_date, format_datetime, format_money, format_number, _range))
)


def _make_environment(templates_dir: Path) -> _MailSandbox:
    env = _MailSandbox(
        loader=FileSystemLoader(str(templates_dir), encoding="utf-8"),
        undefined=StrictUndefined,
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=2000,
    )
    helpers: dict[str, Callable[..., Any]] = {
        "first_name": first_name,
        "format_date": format_date,
        "format_datetime": format_datetime,
        "format_money": format_money,
        "format_number": format_number,
    }
    env.filters = {name: FILTERS[name] for name in _FILTERS}
    env.filters.update(helpers, replace=_replace, _metered=_metered)
    env.globals = {"range": _range, "dict": dict, "cycler": Cycler, "joiner": Joiner, **helpers}
    return env


# --- links ----------------------------------------------------------------------------------

_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE
)
_URL_TAIL = re.compile(r"""[^\s<>"'`]+""")  # what follows "http(s)://" in a bare URL
_ANCHOR = re.compile(
    r"""<a\b[^>]*?\shref\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>(.{0,2000}?)</a\s*>""", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]*>")


def _is_web(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _rewrite_html(markup: str, rewrite: Callable[[str], str], keep: str | None) -> str:
    def replace(match: re.Match[str]) -> str:
        raw = match[match.lastindex or 0]  # the one value group that matched
        url = (htmlmod.unescape(raw) if "&" in raw else raw).strip()
        if not _is_web(url) or url == keep:
            return match[0]
        return f'{match[1]}"{htmlmod.escape(rewrite(url), quote=True)}"'

    return _HREF.sub(replace, markup)


def _trim_url(found: str) -> str:
    """A bare URL without the sentence punctuation after it; a closing bracket stays if it is paired."""
    url = found
    while url and url[-1] in ".,;:!?)]}»":
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _rewrite_text(text: str, rewrite: Callable[[str], str], keep: str | None) -> str:
    """Every bare http(s) URL through `rewrite`; found from each "://", cheaper than a regex scan."""
    pieces: list[str] = []
    done = 0
    colon = text.find("://")
    while colon >= 0:
        scheme = text[max(0, colon - 5) : colon].lower()
        start = colon - 5 if scheme == "https" else colon - 4 if scheme.endswith("http") else -1
        tail = _URL_TAIL.match(text, colon + 3) if start >= done else None
        if tail is None:
            colon = text.find("://", colon + 3)
            continue
        found = text[start : tail.end()]
        if keep and found.startswith(keep):
            replacement = found
        else:
            url = _trim_url(found)
            replacement = rewrite(url) + found[len(url) :]
        pieces += (text[done:start], replacement)
        done = tail.end()
        colon = text.find("://", done)
    pieces.append(text[done:])
    return "".join(pieces)


def _text_from_html(markup: str) -> str:
    """Plain text for an HTML-only template: links keep their URL, as "label (url)"."""

    def inline(match: re.Match[str]) -> str:
        raw = match.group(1) if match.group(1) is not None else match.group(2)
        url = htmlmod.unescape(raw).strip()
        label = match.group(3)
        shown = " ".join(htmlmod.unescape(_TAG.sub("", label)).split())
        if not url or url.startswith("#") or shown == url:
            return label
        return f"{label} ({htmlmod.escape(url, quote=False)})"

    return html_to_text(_ANCHOR.sub(inline, markup))


_SUBJECT_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _clean_subject(subject: str) -> str:
    """One line: every run of whitespace, line break or control character becomes one space."""
    return " ".join(_SUBJECT_BREAKS.sub(" ", subject).split())


_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _clean_text(text: str) -> str:
    """LF line endings, no trailing spaces, no blank lines at either end, one final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    return text.rstrip(" \t").strip("\n") + "\n"


# --- the renderer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Choice:
    name: str
    language: str  # the template files used
    locale_tag: str  # formatting locale: the most specific requested tag that led there
    direction: str
    subject: jinja2.Template
    text: jinja2.Template | None
    html: jinja2.Template | None


def _position(output: Iterator[str]) -> tuple[str | None, int | None]:
    """The template file and line a suspended render generator stopped at."""
    generator: Any = output
    while isinstance(getattr(generator, "gi_yieldfrom", None), GeneratorType):
        generator = generator.gi_yieldfrom
    frame = getattr(generator, "gi_frame", None)
    if frame is None:
        return None, None
    template = frame.f_globals.get("__jinja_template__")
    if template is None:
        return None, None
    return template.filename, template.get_corresponding_lineno(frame.f_lineno)


def _candidates(languages: Sequence[str | None]) -> Iterator[str]:
    """Each preferred tag, then its shorter forms (zh-Hant-TW, zh-Hant, zh), then English."""
    for tag in (*languages, "en"):
        if not tag:
            continue
        parts = tag.replace("_", "-").split("-")
        for size in range(len(parts), 0, -1):
            yield "-".join(parts[:size])


class TemplateRenderer:
    """Renders the templates of one folder; compiled templates are kept for the renderer's life."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = Path(templates_dir)
        self._env = _make_environment(self.templates_dir)
        self._index = self._scan()
        self._choices: dict[tuple[str, tuple[str | None, ...]], _Choice] = {}

    def _scan(self) -> dict[str, dict[str, tuple[str, frozenset[str]]]]:
        """name -> lower-case language -> (language as written, parts present)."""
        index: dict[str, dict[str, tuple[str, frozenset[str]]]] = {}
        if not self.templates_dir.is_dir():
            raise TemplateError(f"templates folder {self.templates_dir} does not exist")
        for folder in sorted(self.templates_dir.iterdir()):
            if not folder.is_dir() or not _TEMPLATE_NAME.fullmatch(folder.name):
                continue
            parts: dict[str, tuple[str, set[str]]] = {}
            for file in folder.iterdir():
                match = _PART_FILE.fullmatch(file.name)
                if match and file.is_file():
                    language = match.group("language")
                    parts.setdefault(language.lower(), (language, set()))[1].add(match.group("part"))
            languages = {
                key: (language, frozenset(found))
                for key, (language, found) in parts.items()
                if "subject" in found and found & {"txt", "html"}
            }
            if languages:
                index[folder.name] = languages
        return index

    def names(self) -> frozenset[str]:
        """The templates found: folders with at least one complete language."""
        return frozenset(self._index)

    def languages(self, name: str) -> frozenset[str]:
        """The languages `name` exists in, as their files spell them."""
        return frozenset(language for language, _ in self._known(name).values())

    def _known(self, name: str) -> dict[str, tuple[str, frozenset[str]]]:
        try:
            return self._index[name]
        except KeyError:
            known = ", ".join(sorted(self._index)) or "none"
            raise TemplateError(
                f"no template named {name!r} in {self.templates_dir} (known: {known})",
                template=name,
                hint="each template is a folder holding <language>.subject.j2 and .txt.j2 or .html.j2",
            ) from None

    def _choose(self, name: str, languages: tuple[str | None, ...]) -> _Choice:
        key = (name, languages)
        choice = self._choices.get(key)
        if choice is not None:
            return choice
        available = self._known(name)
        tried: list[str] = []
        for candidate in _candidates(languages):
            tried.append(candidate)
            found = available.get(candidate.lower())
            if found is None:
                continue
            language, parts = found
            requested = next(
                (tag for tag in _request_of(candidate, languages) if _known_locale(tag)),
                language if _known_locale(language) else "en",
            )
            choice = _Choice(
                name=name,
                language=language,
                locale_tag=requested,
                direction=text_direction(language),
                subject=self._compile(name, language, "subject"),
                text=self._compile(name, language, "txt") if "txt" in parts else None,
                html=self._compile(name, language, "html") if "html" in parts else None,
            )
            if len(self._choices) > 10_000:
                self._choices.clear()
            self._choices[key] = choice
            return choice
        raise TemplateError(
            f"template {name!r} has none of the languages {', '.join(dict.fromkeys(tried))}",
            template=name,
            hint=f"it exists in: {', '.join(sorted(self.languages(name)))}",
        )

    def _display(self, filename: str | None) -> str | None:
        if filename is None:
            return None
        try:
            return str(Path(filename).relative_to(self.templates_dir.parent))
        except ValueError:
            return filename

    def _compile(self, name: str, language: str, part: str) -> jinja2.Template:
        file = f"{name}/{language}.{part}.j2"
        try:
            template = self._env.get_template(file)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}",
                template=name,
                path=self._display(exc.filename) or f"{self.templates_dir.name}/{file}",
                line=exc.lineno,
            ) from exc
        except TemplateNotFound as exc:
            raise TemplateError(f"template file not found: {exc.name}", template=name) from exc
        # The same keys as jinja2's ChainMap over the environment's globals, which every new
        # render context would otherwise copy key by key.
        template.globals = self._env.globals
        return template

    def _run(self, name: str, template: jinja2.Template, variables: dict[str, Any]) -> str:
        try:
            context = template.new_context(variables, shared=True)  # globals are already merged in
            pieces: list[str] = []
            size = 0
            output = template.root_render_func(context)
            for piece in output:
                size += len(piece)
                if size > MAX_OUTPUT:
                    path, line = _position(output)
                    raise TemplateError(
                        f"output over {MAX_OUTPUT} characters",
                        template=name,
                        path=self._display(path),
                        line=line,
                    )
                pieces.append(piece)
            return "".join(pieces)
        except TemplateError:
            raise
        except Exception as exc:  # any failure inside a template fails this email only
            raise self._failure(name, template, exc) from exc

    def _failure(self, name: str, template: jinja2.Template, exc: Exception) -> TemplateError:
        """A TemplateError naming the innermost template file and line where `exc` happened."""
        tb: TracebackType | None = exc.__traceback__
        try:
            self._env.handle_exception()  # re-raises with template frames in the traceback
        except Exception as rewritten:
            tb = rewritten.__traceback__
        path, line = template.filename, None
        root = str(self.templates_dir)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root) and filename.endswith(".j2"):
                path, line = filename, tb.tb_lineno
            tb = tb.tb_next
        if isinstance(exc, TemplateSyntaxError):
            path, line = exc.filename or path, exc.lineno
        if isinstance(exc, UndefinedError | _LimitError | jinja2.TemplateError):
            message = str(exc)
        elif isinstance(exc, RecursionError):
            message = "too deeply nested (recursion)"
        else:
            message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, UndefinedError):
            hint = "the variable is not in the template context; see templates/README.md"
        else:
            hint = None
        return TemplateError(message, template=name, path=self._display(path), line=line, hint=hint)

    def render(
        self,
        name: str,
        *,
        languages: Sequence[str],
        context: Mapping[str, Any],
        link_rewriter: Callable[[str], str] | None = None,
        timezone: str = "UTC",
    ) -> RenderedEmail:
        """Render template `name` in the first available language of `languages` (then English).

        The context gains `language` and `text_direction`. With `link_rewriter`, every
        http(s) link in the HTML (and every bare URL in a text template) goes through it,
        except `context["unsubscribe_url"]`.
        """
        choice = self._choose(name, tuple(languages))
        _zone(timezone)
        variables = {
            **self._env.globals,
            **context,
            "language": choice.language,
            "text_direction": choice.direction,
        }
        token = _STATE.set(_RenderState(choice.locale_tag, timezone))
        try:
            subject = _clean_subject(self._run(name, choice.subject, variables))
            html = self._run(name, choice.html, variables) if choice.html is not None else None
            text = self._run(name, choice.text, variables) if choice.text is not None else None
        finally:
            _STATE.reset(token)
        if not subject:
            raise TemplateError(
                "the subject is empty after rendering",
                template=name,
                path=self._display(choice.subject.filename),
                hint="a subject must contain some text whatever the customer's data",
            )
        keep = context.get("unsubscribe_url")
        keep = keep if isinstance(keep, str) else None
        if html is not None and link_rewriter is not None:
            html = _rewrite_html(html, link_rewriter, keep)
        if text is None:
            assert html is not None
            text = _text_from_html(html)
        elif link_rewriter is not None:
            text = _rewrite_text(text, link_rewriter, keep)
        return RenderedEmail(name, choice.language, subject, _clean_text(text), html)


def _request_of(candidate: str, languages: Sequence[str | None]) -> list[str]:
    """The requested tags that `candidate` was derived from, most specific first."""
    wanted = candidate.lower()
    found: list[str] = []
    for tag in (*languages, "en"):
        if not tag:
            continue
        spelled = tag.replace("_", "-")
        if spelled.lower() == wanted or spelled.lower().startswith(wanted + "-"):
            found.append(spelled)
            break
    found.append(candidate)
    return found


# --- the variables templates get ------------------------------------------------------------

_SALESPERSON_KEYS = ("name", "email", "language", "timezone", "phone", "title", "signature")


def _years_between(start: date, today: date) -> int:
    years = today.year - start.year
    if (today.month, today.day) < (start.month, start.day):
        years -= 1
    return max(0, years)


def template_context(
    *,
    customer: Mapping[str, Any],
    salesperson: Mapping[str, Any],
    purchase: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The variables a template gets (besides `language` and `text_direction`, added by render).

    - `customer`: every field given (the `customers show --json` shape: `id`, `name`, `email`,
      `company`, `birthday`, `language`, `timezone`, `tags`, `custom`, ...) plus `first_name`.
    - `salesperson`: `name`, `email`, `first_name`, and `language`, `timezone`, `phone`,
      `title`, `signature` when given (nothing else: no account settings reach templates).
    - `purchase` (only when given): `product`, `quantity`, `amount_minor`, `currency`,
      `purchased_at`, `order_ref`, plus `amount` (a Decimal) and `years_since` (whole years
      from the purchase date to `today`).
    - `today`: `extra["today"]` when given, else today's date in the customer's timezone.
    - `unsubscribe_url` (only when given: templates that link it fail without one).
    - every key of `extra` (e.g. `feedback_url`, a callable taking a score;
      `previous_subject` for follow-ups).
    """
    extra = dict(extra or {})
    people = dict(customer)
    people["first_name"] = people.get("first_name") or first_name(people.get("name"))
    seller = {key: salesperson[key] for key in _SALESPERSON_KEYS if key in salesperson}
    seller["first_name"] = first_name(seller.get("name"))
    today = extra.get("today")
    if not isinstance(today, date):
        zone = people.get("timezone") or "UTC"
        today = datetime.now(_zone(zone) if isinstance(zone, str) else ZoneInfo("UTC")).date()
    context: dict[str, Any] = {"customer": people, "salesperson": seller, "today": today}
    if purchase is not None:
        bought = dict(purchase)
        if "amount_minor" in bought and "currency" in bought:
            bought.setdefault(
                "amount", from_minor_units(int(bought["amount_minor"]), str(bought["currency"]))
            )
        when = bought.get("purchased_at")
        if isinstance(when, date):
            day = when.date() if isinstance(when, datetime) else when
            bought.setdefault("years_since", _years_between(day, today))
        context["purchase"] = bought
    if unsubscribe_url is not None:
        context["unsubscribe_url"] = unsubscribe_url
    context.update(extra)
    return context


__all__ = [
    "RenderedEmail",
    "TemplateError",
    "TemplateRenderer",
    "first_name",
    "format_date",
    "format_datetime",
    "format_money",
    "format_number",
    "template_context",
    "text_direction",
]
