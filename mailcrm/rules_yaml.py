"""Rule files (`rules/*.yaml`) → a validated `RuleSet`, with every problem pointing at its line.

A salesperson edits these files by hand, so the loader is strict and talkative: unknown
keys and names get a "did you mean", every problem of every file is reported at once,
secrets are refused wherever they appear, and a daemon keeps running on the last good
rule set while an edit is broken (`RuleWatcher`).

Files are read with the safe loader of `mailcrm.yamlfile` (no Python tags, no duplicate
keys, bounded aliases). The node tree is then walked once more to keep what the plain
data loses: where each *value* starts (errors point at `thank_yuo`, not at `template:`)
and the text as written (`send_time: 10:00` is the number 600 in YAML 1.1, and the key
`on:` is the boolean true).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time as clock
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.customers import normalize_custom_key
from mailcrm.domain.rules import (
    AFTER_WHAT,
    ANNIVERSARY_FIELDS,
    ANY_OUTBOUND,
    CUSTOM_FIELD_PREFIX,
    DEFAULT_SEND_TIME,
    EVENT_KINDS,
    STATUSES,
    TRIGGER_KEYS,
    AfterPurchase,
    AnniversaryOf,
    Filters,
    LeapDay,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    Rule,
    RuleSet,
    SendWindow,
    Trigger,
    check_rule_name,
    parse_clock,
    parse_days,
    parse_duration,
    parse_hours,
)
from mailcrm.domain.values import normalize_currency, normalize_language, normalize_tag, to_minor_units
from mailcrm.errors import ConfigError, MailcrmError, ValidationError
from mailcrm.yamlfile import PathKey, Position, YamlDocument, YamlValueError, load_text

RULE_FILE_SUFFIXES = (".yaml", ".yml")

TOP_KEYS = ("owner", "sender", "send_window", "send_time", "rules")
RULE_KEYS = (
    "name",
    "when",
    "template",
    "where",
    "repeat",
    "send_window",
    "send_time",
    "sender",
    "enabled",
    "start",
    "end",
)
# Options a trigger may carry next to its key under `when:`.
TRIGGER_OPTIONS: dict[str, tuple[str, ...]] = {
    "after": ("wait",),
    "anniversary_of": ("years", "leap_day"),
    "no_reply_to": ("wait",),
    "no_purchase_for": (),
    "on": (),
    "event": ("wait",),
}
WHERE_KEYS = ("tags", "lead_source", "owner", "language", "status", "spend", "bought")
SPEND_KEYS = ("min", "max", "currency")
WINDOW_KEYS = ("days", "hours")
REPEAT_KEYS = ("times", "every")
NO_WINDOW = ("any", "anytime", "always")
LEAP_DAYS = ("feb28", "mar1")
MAX_REPEATS = 10

_SECRET_KEY = re.compile(r"passw|secret|token|api_?key|credential", re.IGNORECASE)
_CLOCK_TEXT = re.compile(r"\d{1,2}(:\d{2})?")
_MAX_VALUES = 200_000
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class RuleError(ConfigError):
    """One or more problems in the rule files; `problems` holds each with its file and line."""

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            only = self.problems[0]
            super().__init__(only.message, hint=only.hint)
            self.path, self.line, self.column, self.field = only.path, only.line, only.column, only.field
        else:
            listed = "\n".join("  " + str(p).replace("\n", "\n  ") for p in self.problems)
            super().__init__(f"{len(self.problems)} problems in the rule files:\n{listed}")


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`, did you mean 'x'?` for a close match, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f", did you mean {close[0]!r}?" if close else ""


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a folder, in name order; hidden files (editor backups) are skipped."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in RULE_FILE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


# --- reading --------------------------------------------------------------------------


@dataclass
class _Tree:
    """The document as written: keys by their text, plus key and value positions."""

    data: Any
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)
    raw: dict[PathKey, str] = field(default_factory=dict)


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(text: str, path: str) -> _Tree:
    """Rebuild the document keeping raw key text and value positions.

    Runs the same refusals as `mailcrm.yamlfile` (it also runs when that loader stopped
    at an impossible date such as 2026-13-01, which is kept here as the text written so
    the field's own check reports it with its line).
    """
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    tree = _Tree(data=None)
    if node is None:
        return tree
    constructor = yaml.constructor.SafeConstructor()
    count = 0

    def refuse(where: yaml.Node, message: str, hint: str | None = None) -> ConfigError:
        line, column = _mark(where)
        return ConfigError(message, path=path, line=line, column=column, hint=hint)

    def build(current: yaml.Node, loc: PathKey) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise refuse(current, "document expands to too many values (alias bomb?)")
        tree.values[loc] = _mark(current)
        if isinstance(current, yaml.MappingNode | yaml.SequenceNode) and current.tag not in _PLAIN_TAGS:
            raise refuse(current, f"unsupported YAML tag {current.tag}", "only plain YAML is accepted")
        if isinstance(current, yaml.MappingNode):
            constructor.flatten_mapping(current)
            result: dict[str, Any] = {}
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise refuse(key_node, "mapping keys must be plain scalars")
                name = str(key_node.value)
                if name in result:
                    raise refuse(key_node, f"duplicate key {name!r}", "each key may appear once in a mapping")
                child: PathKey = (*loc, name)
                tree.keys[child] = _mark(key_node)
                result[name] = build(value_node, child)
            return result
        if isinstance(current, yaml.SequenceNode):
            return [build(item, (*loc, index)) for index, item in enumerate(current.value)]
        tree.raw[loc] = str(current.value)
        try:
            return constructor.construct_object(current, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise refuse(
                current, f"unsupported YAML value: {exc.problem}", "only plain YAML is accepted"
            ) from None
        except (ValueError, OverflowError):
            return str(current.value)

    tree.data = build(node, ())
    return tree


# --- one file -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Defaults:
    owner: str | None = None
    sender: str | None = None
    window: SendWindow | None = None
    send_time: time = DEFAULT_SEND_TIME


@dataclass(frozen=True)
class _Named:
    """Where a rule name is defined or referenced, for the checks across files."""

    name: str
    document: YamlDocument
    loc: PathKey
    source: str | None = None


class _FileParser:
    """Validates one rule file, collecting every problem instead of stopping at the first."""

    def __init__(
        self,
        path: str,
        tree: _Tree,
        known_templates: frozenset[str],
        salespeople: frozenset[str] | None,
    ) -> None:
        self.path = path
        self.tree = tree
        self.key_doc = YamlDocument(path, tree.data, dict(tree.keys))
        self.value_doc = YamlDocument(path, tree.data, {**tree.keys, **tree.values})
        self.known_templates = known_templates
        self.salespeople = salespeople
        self.problems: list[ConfigError] = []
        self.rules: list[Rule] = []
        self.names: list[_Named] = []
        self.references: list[_Named] = []

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
            if key in allowed or _SECRET_KEY.search(key):
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

    # -- the file

    def parse(self) -> None:
        data = self.tree.data
        self.refuse_secrets(data, ())
        if data is None:
            return
        top = self.mapping(data, (), "a rule file")
        if top is None:
            return
        self.only_keys(top, (), TOP_KEYS, "a rule file")
        defaults = _Defaults(
            owner=self.salesperson(top["owner"], ("owner",), "owner") if "owner" in top else None,
            sender=self.salesperson(top["sender"], ("sender",), "sender") if "sender" in top else None,
            window=self.window(top["send_window"], ("send_window",)) if "send_window" in top else None,
            send_time=(
                self.clock_time(top["send_time"], ("send_time",)) or DEFAULT_SEND_TIME
                if "send_time" in top
                else DEFAULT_SEND_TIME
            ),
        )
        if "rules" not in top:
            self.fail((), "missing `rules:` (the list of rules)", hint="see config/rules.example/alice.yaml")
            return
        items = top["rules"]
        if items is None:
            return
        if not isinstance(items, list):
            self.fail(("rules",), "`rules:` must be a list (each rule starts with `- name:`)")
            return
        for index, item in enumerate(items):
            rule = self.rule(item, ("rules", index), defaults)
            if rule is not None:
                self.rules.append(rule)

    def refuse_secrets(self, value: Any, loc: PathKey) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if _SECRET_KEY.search(key):
                    self.fail(
                        (*loc, key),
                        f"`{key}:` does not belong in a rule file: secrets never go in rules",
                        hint="remove it; mailbox credentials are set in mailcrm.yaml with "
                        "password_env or password_file",
                        key=True,
                    )
                else:
                    self.refuse_secrets(item, (*loc, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.refuse_secrets(item, (*loc, index))

    def rule(self, item: Any, loc: PathKey, defaults: _Defaults) -> Rule | None:
        mapping = self.mapping(item, loc, "a rule")
        if mapping is None:
            return None
        before = len(self.problems)
        self.only_keys(mapping, loc, RULE_KEYS, "a rule")
        name = self.rule_name(mapping, loc)
        template = self.template(mapping, loc)
        send_time = (
            self.clock_time(mapping["send_time"], (*loc, "send_time"))
            if "send_time" in mapping
            else defaults.send_time
        )
        trigger = self.trigger(mapping, loc, name, send_time or DEFAULT_SEND_TIME)
        filters = self.filters(mapping["where"], (*loc, "where")) if "where" in mapping else Filters()
        window = (
            self.window(mapping["send_window"], (*loc, "send_window"))
            if "send_window" in mapping
            else defaults.window
        )
        sender = (
            self.salesperson(mapping["sender"], (*loc, "sender"), "sender")
            if "sender" in mapping
            else defaults.sender
        )
        enabled = mapping.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail((*loc, "enabled"), "enabled must be true or false")
        start = self.day(mapping["start"], (*loc, "start"), "start date") if "start" in mapping else None
        end = self.day(mapping["end"], (*loc, "end"), "end date") if "end" in mapping else None
        if start is not None and end is not None and end < start:
            self.fail((*loc, "end"), f"end date {end} is before start date {start}")
        if len(self.problems) > before or name is None or template is None or trigger is None:
            return None
        if filters is None or send_time is None:
            return None
        line = self.value_doc.position_of(loc)
        return Rule(
            name=name,
            trigger=trigger,
            template=template,
            filters=filters,
            send_window=window,
            send_time=send_time,
            sender=sender,
            owner=defaults.owner,
            enabled=bool(enabled),
            start=start,
            end=end,
            source=f"{self.path}:{line[0] if line else 0}",
        )

    def rule_name(self, mapping: dict[str, Any], loc: PathKey) -> str | None:
        if "name" not in mapping:
            self.fail(
                loc, "a rule needs a `name:`", hint="e.g. name: thank-you (unique across all rule files)"
            )
            return None
        text = self.text(mapping["name"], (*loc, "name"), "name")
        if text is None:
            return None
        try:
            name = check_rule_name(text)
        except MailcrmError as exc:
            self.bad((*loc, "name"), exc)
            return None
        self.names.append(_Named(name, self.value_doc, (*loc, "name")))
        return name

    def template(self, mapping: dict[str, Any], loc: PathKey) -> str | None:
        if "template" not in mapping:
            self.fail(loc, "a rule needs a `template:`", hint=_templates_hint(self.known_templates))
            return None
        name = self.text(mapping["template"], (*loc, "template"), "template")
        if name is None:
            return None
        if name not in self.known_templates:
            self.fail(
                (*loc, "template"),
                f"unknown template {name!r}{suggest(name, self.known_templates)}",
                hint=_templates_hint(self.known_templates),
            )
            return None
        return name

    # -- triggers

    def trigger(
        self, rule: dict[str, Any], loc: PathKey, name: str | None, send_time: time
    ) -> Trigger | None:
        when_loc = (*loc, "when")
        if "when" not in rule:
            self.fail(loc, "a rule needs a `when:`", hint=f"one of: {', '.join(TRIGGER_KEYS)}")
            return None
        when = self.mapping(rule["when"], when_loc, "when")
        if when is None:
            return None
        options = sorted({o for opts in TRIGGER_OPTIONS.values() for o in opts})
        known = (*TRIGGER_KEYS, *options)
        self.only_keys(when, when_loc, known, "when")
        chosen = [key for key in when if key in TRIGGER_KEYS]
        if not chosen:
            if all(key in known for key in when):
                self.fail(when_loc, "`when:` needs a trigger", hint=f"one of: {', '.join(TRIGGER_KEYS)}")
            return None
        if len(chosen) > 1:
            self.fail(
                (*when_loc, chosen[1]),
                f"one trigger per rule: {chosen[0]!r} and {chosen[1]!r} are both given",
                hint="split them into two rules",
                key=True,
            )
            return None
        kind = chosen[0]
        for option in when:
            if option in options and option not in TRIGGER_OPTIONS[kind]:
                allowed = ", ".join(TRIGGER_OPTIONS[kind]) or "no options"
                self.fail((*when_loc, option), f"`{option}` does not apply to `{kind}` ({allowed})", key=True)
        if "repeat" in rule and kind != "no_reply_to":
            self.fail((*loc, "repeat"), "`repeat` only applies to `no_reply_to` follow-ups", key=True)
        value, value_loc = when[kind], (*when_loc, kind)
        wait = self.duration(when["wait"], (*when_loc, "wait"), "wait") if "wait" in when else timedelta()
        if kind == "no_reply_to":
            return self.no_reply(rule, loc, when, value, value_loc, name, wait)
        if wait is None:
            return None
        if kind == "after":
            what = self.text(value, value_loc, "after")
            if what is not None and what not in AFTER_WHAT:
                self.fail(
                    value_loc,
                    f"unknown event {what!r}{suggest(what, AFTER_WHAT)}",
                    hint="write after: purchase",
                )
                return None
            return AfterPurchase(wait=wait) if what else None
        if kind == "anniversary_of":
            return self.anniversary(when, when_loc, value, value_loc)
        if kind == "no_purchase_for":
            period = self.duration(value, value_loc, "no_purchase_for", allow_zero=False)
            return NoPurchaseFor(period=period) if period else None
        if kind == "on":
            return self.on_date(value, value_loc, send_time)
        event = self.text(value, value_loc, "event")
        if event is not None and event not in EVENT_KINDS:
            self.fail(
                value_loc,
                f"unknown event {event!r}{suggest(event, EVENT_KINDS)}",
                hint=f"one of: {', '.join(EVENT_KINDS)}",
            )
            return None
        return OnEvent(kind=event, wait=wait) if event else None

    def anniversary(
        self, when: dict[str, Any], loc: PathKey, value: Any, value_loc: PathKey
    ) -> Trigger | None:
        name = self.text(value, value_loc, "anniversary_of")
        if name is None:
            return None
        if name.startswith(CUSTOM_FIELD_PREFIX):
            try:
                name = CUSTOM_FIELD_PREFIX + normalize_custom_key(name[len(CUSTOM_FIELD_PREFIX) :])
            except MailcrmError as exc:
                self.bad(value_loc, exc)
                return None
        elif name not in ANNIVERSARY_FIELDS:
            self.fail(
                value_loc,
                f"unknown date field {name!r}{suggest(name, ANNIVERSARY_FIELDS)}",
                hint=f"one of: {', '.join(ANNIVERSARY_FIELDS)}, or custom.FIELD for a custom date",
            )
            return None
        years: frozenset[int] | None = None
        if "years" in when:
            raw = when["years"]
            items = raw if isinstance(raw, list) else [raw]
            numbers = set()
            for index, item in enumerate(items):
                item_loc = (*loc, "years", index) if isinstance(raw, list) else (*loc, "years")
                if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 200:
                    self.fail(item_loc, f"years must be whole numbers from 1 to 200, not {item!r}")
                    return None
                numbers.add(item)
            if not numbers:
                self.fail(
                    (*loc, "years"),
                    "years is empty",
                    hint="remove it for every year, or list e.g. [1, 5, 10]",
                )
                return None
            years = frozenset(numbers)
        leap_day: LeapDay | None = None
        if "leap_day" in when:
            text = self.text(when["leap_day"], (*loc, "leap_day"), "leap_day")
            if text is None:
                return None
            if text.lower() not in LEAP_DAYS:
                self.fail(
                    (*loc, "leap_day"),
                    f"unknown leap_day {text!r}{suggest(text.lower(), LEAP_DAYS)}",
                    hint="feb28 (the default) or mar1: where Feb 29 falls in common years",
                )
                return None
            leap_day = "mar1" if text.lower() == "mar1" else "feb28"
        return AnniversaryOf(field=name, years=years, leap_day=leap_day)

    def no_reply(
        self,
        rule: dict[str, Any],
        loc: PathKey,
        when: dict[str, Any],
        value: Any,
        value_loc: PathKey,
        name: str | None,
        wait: timedelta | None,
    ) -> Trigger | None:
        source = self.text(value, value_loc, "no_reply_to")
        if source is None:
            return None
        if source != ANY_OUTBOUND:
            if source == name:
                self.fail(
                    value_loc, "a rule cannot follow up on itself", hint="use `repeat: {times: 2, every: 4d}`"
                )
                return None
            self.references.append(_Named(name or "", self.value_doc, value_loc, source=source))
        if wait is None:
            return None
        if "wait" not in when or wait <= timedelta():
            self.fail(
                (*loc, "when", "wait") if "wait" in when else (*loc, "when"),
                "a follow-up needs a `wait:` longer than zero",
                hint="e.g. when: {no_reply_to: any_outbound, wait: 3d}",
            )
            return None
        times, every = 0, wait
        if "repeat" in rule:
            repeat_loc = (*loc, "repeat")
            repeat = self.mapping(rule["repeat"], repeat_loc, "repeat")
            if repeat is None:
                return None
            self.only_keys(repeat, repeat_loc, REPEAT_KEYS, "repeat")
            raw_times = repeat.get("times", 1)
            if (
                isinstance(raw_times, bool)
                or not isinstance(raw_times, int)
                or not 1 <= raw_times <= MAX_REPEATS
            ):
                self.fail((*repeat_loc, "times"), f"times must be a whole number from 1 to {MAX_REPEATS}")
                return None
            times = raw_times
            if "every" in repeat:
                found = self.duration(repeat["every"], (*repeat_loc, "every"), "every", allow_zero=False)
                if found is None:
                    return None
                every = found
        return NoReplyTo(source=source, wait=wait, repeat_times=times, repeat_every=every)

    def on_date(self, value: Any, loc: PathKey, send_time: time) -> Trigger | None:
        if isinstance(value, datetime):
            return OnDate(at=value)
        if isinstance(value, date):
            return OnDate(at=datetime.combine(value, send_time))
        text = self.text(value, loc, "on")
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                loc, f"invalid date-time {text!r}", hint='write "YYYY-MM-DDTHH:MM" (customer\'s local time)'
            )
            return None
        if len(text) == 10:  # a date only: the rule's send time
            parsed = datetime.combine(parsed.date(), send_time)
        return OnDate(at=parsed)

    # -- filters

    def filters(self, value: Any, loc: PathKey) -> Filters | None:
        where = self.mapping(value, loc, "where")
        if where is None:
            return None
        self.only_keys(where, loc, WHERE_KEYS, "where")
        before = len(self.problems)
        tags = self.normalized(where, loc, "tags", normalize_tag)
        sources = self.normalized(where, loc, "lead_source", _lead_source)
        languages = self.normalized(where, loc, "language", normalize_language)
        statuses = self.normalized(where, loc, "status", _status)
        bought = self.normalized(where, loc, "bought", _product, split=False)
        owners: set[str] = set()
        if "owner" in where:
            for text, item_loc in self.texts(where["owner"], (*loc, "owner"), "owner"):
                found = self.salesperson(text, item_loc, "owner")
                if found:
                    owners.add(found)
        spend = self.spend(where["spend"], (*loc, "spend")) if "spend" in where else (None, None, None)
        if len(self.problems) > before:
            return None
        return Filters(
            tags=tags,
            lead_sources=sources,
            owners=frozenset(owners),
            languages=languages,
            statuses=statuses,
            spend_min_minor=spend[0],
            spend_max_minor=spend[1],
            spend_currency=spend[2],
            bought=bought,
        )

    def normalized(
        self,
        where: dict[str, Any],
        loc: PathKey,
        key: str,
        normalize: Callable[[str], str],
        *,
        split: bool = True,
    ) -> frozenset[str]:
        if key not in where:
            return frozenset()
        result = set()
        for text, item_loc in self.texts(where[key], (*loc, key), key, split=split):
            try:
                result.add(normalize(text))
            except MailcrmError as exc:
                self.bad(item_loc, exc)
        return frozenset(result)

    def spend(self, value: Any, loc: PathKey) -> tuple[int | None, int | None, str | None]:
        spend = self.mapping(value, loc, "spend")
        if spend is None:
            return None, None, None
        self.only_keys(spend, loc, SPEND_KEYS, "spend")
        if "min" not in spend and "max" not in spend:
            self.fail(
                loc, "spend needs `min:`, `max:` or both", hint="e.g. spend: {min: 1000, currency: THB}"
            )
            return None, None, None
        if "currency" not in spend:
            self.fail(loc, "spend needs a `currency:`", hint="an ISO 4217 code such as THB, USD, EUR")
            return None, None, None
        text = self.text(spend["currency"], (*loc, "currency"), "currency")
        try:
            currency = normalize_currency(text) if text else None
        except MailcrmError as exc:
            self.bad((*loc, "currency"), exc)
            currency = None
        if currency is None:
            return None, None, None
        bounds: list[int | None] = []
        for key in ("min", "max"):
            if key not in spend:
                bounds.append(None)
                continue
            amount_loc = (*loc, key)
            raw = spend[key]
            amount = self.tree.raw.get(amount_loc, "") if isinstance(raw, float) else raw
            text = (
                self.text(amount, amount_loc, f"spend {key}") if not isinstance(amount, int) else str(amount)
            )
            minor = None
            if text is not None:
                try:
                    minor = to_minor_units(text, currency)
                except MailcrmError as exc:
                    self.bad(amount_loc, exc)
            if minor is not None and minor < 0:
                self.fail(amount_loc, f"spend {key} must not be negative")
                minor = None
            bounds.append(minor)
        low, high = bounds
        if low is not None and high is not None and high < low:
            self.fail((*loc, "max"), "spend max is below spend min")
        return low, high, currency


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


def _templates_hint(known: Collection[str]) -> str:
    if not known:
        return "no templates are known: create templates/<name>/ (or pass --templates DIR)"
    return f"known templates: {', '.join(sorted(known))}"


def _lead_source(text: str) -> str:
    value = " ".join(text.split()).lower()
    if len(value) > 100:
        raise ValidationError("lead source is longer than 100 characters")
    return value


def _status(text: str) -> str:
    value = text.strip().lower()
    if value == "archived":
        raise ValidationError(
            "archived customers never get automated mail",
            hint=f"use {STATUSES[0]} and/or {STATUSES[1]}",
        )
    if value not in STATUSES[:2]:
        raise ValidationError(
            f"unknown status {text!r}{suggest(value, STATUSES[:2])}", hint="lead or customer"
        )
    return value


def _product(text: str) -> str:
    value = " ".join(text.split())
    if len(value) > 200:
        raise ValidationError("product name is longer than 200 characters")
    return value


# --- many files -----------------------------------------------------------------------


@dataclass
class _FileResult:
    path: str
    rules: list[Rule]
    problems: list[ConfigError]
    names: list[_Named]
    references: list[_Named]


def _parse_file(
    path: Path, known_templates: frozenset[str], salespeople: frozenset[str] | None
) -> _FileResult:
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _FileResult(shown, [], [ConfigError(f"cannot read file: {exc}", path=shown)], [], [])
    try:
        load_text(text, shown)  # the safety checks: tags, duplicate keys, alias bombs, syntax
    except YamlValueError:
        pass  # an impossible date such as 2026-13-01: reported below with its field
    except ConfigError as exc:
        return _FileResult(shown, [], [exc], [], [])
    try:
        tree = _walk(text, shown)
    except ConfigError as exc:
        return _FileResult(shown, [], [exc], [], [])
    parser = _FileParser(shown, tree, known_templates, salespeople)
    parser.parse()
    return _FileResult(shown, parser.rules, parser.problems, parser.names, parser.references)


def _across_files(results: Sequence[_FileResult]) -> list[ConfigError]:
    """Rule names are unique across files; follow-ups name existing rules without a loop."""
    problems: list[ConfigError] = []
    first: dict[str, _Named] = {}
    for result in results:
        for named in result.names:
            if named.name in first:
                other = first[named.name]
                where = other.document.position_of(other.loc)
                at = f"{other.document.path}:{where[0]}" if where else other.document.path
                problems.append(
                    named.document.error(
                        named.loc,
                        f"rule name {named.name!r} is already used at {at}",
                        hint="rule names must be unique across all rule files (they key the outbox)",
                    )
                )
            else:
                first[named.name] = named
    follows: dict[str, str] = {}
    for result in results:
        for ref in result.references:
            assert ref.source is not None
            if ref.source not in first:
                problems.append(
                    ref.document.error(
                        ref.loc,
                        f"no rule named {ref.source!r}{suggest(ref.source, [*first, ANY_OUTBOUND])}",
                        hint=f"name a rule from any rule file, or write {ANY_OUTBOUND}",
                    )
                )
            elif ref.name:
                follows[ref.name] = ref.source
    reported: set[str] = set()
    for result in results:
        for ref in result.references:
            chain, current = [ref.name], follows.get(ref.name)
            while current is not None and current not in chain:
                chain.append(current)
                current = follows.get(current)
            if current == ref.name and ref.name not in reported:
                reported.update(chain)
                loop = " -> ".join([*chain, ref.name])
                problems.append(
                    ref.document.error(
                        ref.loc,
                        f"follow-up rules form a loop ({loop})",
                        hint="a follow-up may follow another rule's mail, but not in a circle",
                    )
                )
    return problems


def check_rules(
    directory: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> tuple[RuleSet, list[ConfigError]]:
    """Every valid rule and every problem of a rules folder (for `rules check`).

    `salespeople` are the known salesperson emails; `None` skips that check (no
    configuration to check against).
    """
    shown = str(directory)
    if not directory.is_dir():
        problem = ConfigError(
            "rules folder not found",
            path=shown,
            hint="create it (`mailcrm init` makes one) or set rules_dir in mailcrm.yaml",
        )
        return RuleSet(), [problem]
    templates = frozenset(known_templates)
    people = None if salespeople is None else frozenset(normalize_address(p) for p in salespeople)
    results = [_parse_file(path, templates, people) for path in rule_files(directory)]
    problems = [p for result in results for p in result.problems] + _across_files(results)
    problems.sort(key=lambda p: (p.path or "", p.line or 0, p.column or 0))
    unique: dict[str, Rule] = {}
    for result in results:
        for rule in result.rules:
            unique.setdefault(rule.name, rule)  # a duplicated name (reported) keeps the first
    rules = tuple(unique.values())
    return RuleSet(rules=rules, files=tuple(r.path for r in results)), problems


def load_rules(
    directory: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> RuleSet:
    """All rule files of `directory`; raises `RuleError` listing every problem of every file."""
    rules, problems = check_rules(directory, known_templates=known_templates, salespeople=salespeople)
    if problems:
        raise RuleError(problems)
    return rules


def load_rule_file(
    path: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> RuleSet:
    """One rule file on its own (follow-ups may only name rules of the same file)."""
    people = None if salespeople is None else frozenset(normalize_address(p) for p in salespeople)
    result = _parse_file(path, frozenset(known_templates), people)
    problems = result.problems + _across_files([result])
    if problems:
        raise RuleError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    return RuleSet(rules=tuple(result.rules), files=(result.path,))


# --- reloading ------------------------------------------------------------------------

_Stamp = tuple[tuple[str, int, int], ...]
# A file changed this recently may change again within the clock's resolution: hash it.
_SETTLE_NS = 2_000_000_000


class RuleWatcher:
    """Reloads the rules when the files change; a broken edit keeps the last good set.

    Cheap when nothing changed (one `stat` per file); a changed stamp is confirmed by a
    content hash, so touching a file does not reload it.
    """

    def __init__(self, directory: Path, loader: Callable[[Path], RuleSet]) -> None:
        self.directory = directory
        self.loader = loader
        self.rules = RuleSet()
        self.error: ConfigError | None = None
        self._stamp: _Stamp | None = None
        self._digest: str | None = None

    def _stamp_now(self) -> _Stamp | None:
        """Name, mtime and size of every rule file; `None` when the folder cannot be listed."""
        try:
            return tuple(
                (path.name, info.st_mtime_ns, info.st_size)
                for path in rule_files(self.directory)
                for info in [path.stat()]
            )
        except OSError:
            return None

    def _digest_now(self) -> str:
        digest = hashlib.sha256()
        try:
            files = rule_files(self.directory)
        except OSError as exc:
            digest.update(f"unreadable folder: {exc.strerror}".encode())
            files = []
        for path in files:
            digest.update(path.name.encode("utf-8", "surrogateescape") + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError as exc:
                digest.update(f"unreadable: {exc.strerror}".encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def reload_if_changed(self, *, force: bool = False) -> tuple[RuleSet, ConfigError | None]:
        """The rules to use now, and the problem of the current files (`None` when they are good).

        While the files stay broken the same error object is returned, so a caller can
        report it once.
        """
        stamp = self._stamp_now()
        settled = stamp is not None and all(clock.time_ns() - mtime > _SETTLE_NS for _, mtime, _ in stamp)
        if not force and stamp is not None and stamp == self._stamp and settled:
            return self.rules, self.error
        digest = self._digest_now()
        self._stamp = stamp
        if not force and digest == self._digest:
            return self.rules, self.error
        self._digest = digest
        try:
            rules = self.loader(self.directory)
        except ConfigError as exc:
            self.error = exc
        else:
            self.rules, self.error = rules, None
        return self.rules, self.error
