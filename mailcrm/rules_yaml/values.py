"""Reading one field of a rule file: the shapes and values every part of a rule shares.

`FieldReader` collects problems instead of raising, so one pass reports every mistake
of a file; each reader returns `None` for a value it refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.rules import SendWindow, parse_clock, parse_days, parse_duration, parse_hours
from mailcrm.errors import ConfigError, MailcrmError
from mailcrm.rules_yaml.tree import Tree
from mailcrm.yamlfile import PathKey, YamlDocument

WINDOW_KEYS = ("days", "hours")
NO_WINDOW = ("any", "anytime", "always")

SECRET_KEY = re.compile(r"passw|secret|token|api_?key|credential", re.IGNORECASE)
_CLOCK_TEXT = re.compile(r"\d{1,2}(:\d{2})?")


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`, did you mean 'x'?` for a close match, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f", did you mean {close[0]!r}?" if close else ""


class FieldReader:
    """Reads single fields of one rule file, collecting every problem instead of stopping."""

    def __init__(self, path: str, tree: Tree, salespeople: frozenset[str] | None) -> None:
        self.path = path
        self.tree = tree
        self.key_doc = YamlDocument(path, tree.data, dict(tree.keys))
        self.value_doc = YamlDocument(path, tree.data, {**tree.keys, **tree.values})
        self.salespeople = salespeople
        self.problems: list[ConfigError] = []

    # -- reporting

    def fail(self, loc: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        document = self.key_doc if key else self.value_doc
        self.problems.append(document.error(loc, message, hint))

    def bad(self, loc: PathKey, exc: MailcrmError) -> None:
        self.fail(loc, exc.message, exc.hint)

    # -- shapes

    def mapping(self, value: Any, loc: PathKey, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.fail(loc, f"{what} must be a mapping (key: value lines)", _shape_hint(what))
        return None

    def only_keys(self, mapping: dict[str, Any], loc: PathKey, allowed: Sequence[str], what: str) -> None:
        for key in mapping:
            if key in allowed or SECRET_KEY.search(key):
                continue
            self.fail(
                (*loc, key),
                f"unknown key {key!r} in {what}{suggest(key, allowed)}",
                hint=f"{what} accepts: {', '.join(allowed)}",
                key=True,
            )

    def text(self, value: Any, loc: PathKey, what: str) -> str | None:
        """A string as written; numbers and yes/no/on/off are taken as the text typed."""
        if isinstance(value, str):
            if value.strip():
                return value.strip()
            self.fail(loc, f"{what} is empty")
            return None
        if isinstance(value, bool | int | float | date) and loc in self.tree.raw:
            return self.tree.raw[loc].strip()
        self.fail(loc, f"{what} must be a single value, not {_kind(value)}")
        return None

    def texts(self, value: Any, loc: PathKey, what: str, *, split: bool = True) -> list[tuple[str, PathKey]]:
        """A list of values; a single string is split on commas when `split`."""
        if isinstance(value, list):
            items = [(item, (*loc, index)) for index, item in enumerate(value)]
        elif isinstance(value, str) and split:
            return [(part.strip(), loc) for part in value.split(",") if part.strip()]
        else:
            items = [(value, loc)]
        result = []
        for item, item_loc in items:
            text = self.text(item, item_loc, what)
            if text is not None:
                result.append((text, item_loc))
        return result

    def duration(self, value: Any, loc: PathKey, what: str, *, allow_zero: bool = True) -> timedelta | None:
        if isinstance(value, int) and not isinstance(value, bool):
            self.fail(
                loc, f"{what} {value} has no unit", hint=f"write e.g. {value}d (days) or {value}h (hours)"
            )
            return None
        text = self.text(value, loc, what)
        if text is None:
            return None
        try:
            return parse_duration(text, allow_zero=allow_zero)
        except MailcrmError as exc:
            self.bad(loc, exc)
            return None

    def clock_time(self, value: Any, loc: PathKey) -> time | None:
        raw = self.tree.raw.get(loc, "")
        if isinstance(value, int) and not isinstance(value, bool) and _CLOCK_TEXT.fullmatch(raw.strip()):
            text: str | None = raw  # `10:00` unquoted reads as 600 (base 60) in YAML 1.1
        else:
            text = self.text(value, loc, "time")
        if text is None:
            return None
        try:
            return parse_clock(text)
        except MailcrmError as exc:
            self.bad(loc, exc)
            return None

    def window(self, value: Any, loc: PathKey) -> SendWindow | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in NO_WINDOW):
            return None
        mapping = self.mapping(value, loc, "send_window")
        if mapping is None:
            return None
        self.only_keys(mapping, loc, WINDOW_KEYS, "send_window")
        days: frozenset[int] | None = frozenset(range(7))
        start, end = time(0), time.max
        if "days" in mapping:
            days = None
            raw = mapping["days"]
            items = raw if isinstance(raw, list) else self.text(raw, (*loc, "days"), "days")
            if items is not None:
                try:
                    days = parse_days([str(i) for i in items] if isinstance(items, list) else items)
                except MailcrmError as exc:
                    self.bad((*loc, "days"), exc)
        if "hours" in mapping:
            hours = self.text(mapping["hours"], (*loc, "hours"), "hours")
            if hours is None:
                return None
            try:
                start, end = parse_hours(hours)
            except MailcrmError as exc:
                self.bad((*loc, "hours"), exc)
                return None
        if days is None:
            return None
        return SendWindow(days=days, start=start, end=end)

    def day(self, value: Any, loc: PathKey, what: str) -> date | None:
        if isinstance(value, datetime):
            self.fail(loc, f"{what} is a date, without a time", hint="write YYYY-MM-DD")
            return None
        if isinstance(value, date):
            return value
        text = self.text(value, loc, what)
        if text is None:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.fail(loc, f"invalid {what} {text!r}", hint="write dates as YYYY-MM-DD, e.g. 2026-03-01")
            return None

    def salesperson(self, value: Any, loc: PathKey, what: str) -> str | None:
        text = self.text(value, loc, what)
        if text is None:
            return None
        try:
            address = normalize_address(text)
        except MailcrmError as exc:
            self.bad(loc, exc)
            return None
        if self.salespeople is not None and address not in self.salespeople:
            listed = ", ".join(sorted(self.salespeople)) or "none"
            self.fail(
                loc,
                f"unknown {what} {address!r}{suggest(address, self.salespeople, cutoff=0.85)}",
                hint=f"a salesperson listed in mailcrm.yaml (known: {listed})",
            )
            return None
        return address


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return type(value).__name__


def _shape_hint(what: str) -> str | None:
    return {
        "a rule file": "start with `rules:` followed by `- name: ...` entries",
        "a rule": "each rule is `- name: ...` with `when:` and `template:` below it",
        "when": "e.g. when: {after: purchase, wait: 1d}",
        "where": "e.g. where: {tags: [vip], language: [th]}",
        "send_window": 'e.g. send_window: {days: mon-fri, hours: "09:00-17:00"}, or `any`',
        "repeat": "e.g. repeat: {times: 2, every: 4d}",
        "spend": "e.g. spend: {min: 1000, max: 50000, currency: THB}",
    }.get(what)
