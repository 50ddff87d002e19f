"""The jinja2 sandbox templates run in, with mailcrm's limits; and the jinja2 version floor.

The version check runs when this module is imported, so importing mailcrm.render
refuses a jinja2 whose sandbox can be escaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import Environment, FileSystemLoader, StrictUndefined, nodes, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner

from mailcrm.render.budget import (
    _STATE,
    MAX_POWER_BITS,
    MAX_RANGE,
    MAX_SEQUENCE,
    MAX_STEPS,
    MAX_STRING,
    _charge,
)
from mailcrm.render.catalog import contained, link_error
from mailcrm.render.errors import TemplateError, _LimitError
from mailcrm.render.helpers import first_name, format_date, format_datetime, format_money, format_number

JINJA2_MINIMUM = (3, 1, 6)


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
    """The sandbox with mailcrm's limits; see the mailcrm.render docstring."""

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


class _ContainedLoader(FileSystemLoader):
    """Loads templates only from inside the folder: a file that is (or sits under) a symlink
    resolving elsewhere is refused with `TemplateError`, whenever it is opened."""

    def __init__(self, templates_dir: Path) -> None:
        super().__init__(str(templates_dir), encoding="utf-8")
        self._root = templates_dir

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not contained(self._root, Path(filename)):
            raise link_error(self._root, Path(filename))
        return source, filename, uptodate


def _make_environment(templates_dir: Path) -> _MailSandbox:
    env = _MailSandbox(
        loader=_ContainedLoader(templates_dir),
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
