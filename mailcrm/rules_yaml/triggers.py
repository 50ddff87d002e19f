"""A rule's `when:`: its one trigger, the trigger's options, and follow-up repeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from mailcrm.domain.customers import normalize_custom_key
from mailcrm.domain.rules import (
    AFTER_WHAT,
    ANNIVERSARY_FIELDS,
    ANY_OUTBOUND,
    CUSTOM_FIELD_PREFIX,
    EVENT_KINDS,
    TRIGGER_KEYS,
    AfterPurchase,
    AnniversaryOf,
    LeapDay,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    Trigger,
)
from mailcrm.errors import MailcrmError
from mailcrm.rules_yaml.tree import Tree
from mailcrm.rules_yaml.values import FieldReader, suggest
from mailcrm.yamlfile import PathKey, YamlDocument

# Options a trigger may carry next to its key under `when:`.
TRIGGER_OPTIONS: dict[str, tuple[str, ...]] = {
    "after": ("wait",),
    "anniversary_of": ("years", "leap_day"),
    "no_reply_to": ("wait",),
    "no_purchase_for": (),
    "on": (),
    "event": ("wait",),
}
REPEAT_KEYS = ("times", "every")
LEAP_DAYS = ("feb28", "mar1")
MAX_REPEATS = 10


@dataclass(frozen=True)
class Named:
    """Where a rule name is defined or referenced, for the checks across files."""

    name: str
    document: YamlDocument
    loc: PathKey
    source: str | None = None


class TriggerReader(FieldReader):
    """Reads `when:` (and `repeat:`) into a `Trigger`; follow-ups are kept in `references`."""

    def __init__(self, path: str, tree: Tree, salespeople: frozenset[str] | None) -> None:
        super().__init__(path, tree, salespeople)
        self.references: list[Named] = []

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
            self.references.append(Named(name or "", self.value_doc, value_loc, source=source))
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
