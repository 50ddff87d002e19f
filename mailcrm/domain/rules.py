"""What an automated-email rule is, as plain frozen values.

A rule file is parsed (in `mailcrm.rules_yaml`) into these objects; the planner turns a
rule plus a customer's facts into outbox rows. The scalar parsers here (durations, days,
hours, clock times) are shared by the loader and its error messages, so the text a
salesperson may write is defined in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import ClassVar, Literal

from mailcrm.errors import ValidationError

LeapDay = Literal["feb28", "mar1"]

DEFAULT_SEND_TIME = time(10, 0)
END_OF_DAY = time.max  # a window written as ending at "24:00"
MAX_DURATION = timedelta(days=3660)

# Trigger keys as written under `when:`; each names one trigger class below.
TRIGGER_KEYS = ("after", "anniversary_of", "no_reply_to", "no_purchase_for", "on", "event")
AFTER_WHAT = ("purchase",)
ANNIVERSARY_FIELDS = ("first_purchase", "last_purchase", "birthday", "customer_since")
CUSTOM_FIELD_PREFIX = "custom."
EVENT_KINDS = ("opened", "clicked", "attended")
ANY_OUTBOUND = "any_outbound"
STATUSES = ("lead", "customer", "archived")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
_UNIT_WORDS = r"(weeks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m)"
_DURATION = re.compile(rf"(?:\s*\d+\s*{_UNIT_WORDS})+\s*", re.IGNORECASE)
_DURATION_PART = re.compile(rf"(\d+)\s*{_UNIT_WORDS}", re.IGNORECASE)
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_ALIASES = {
    "all": frozenset(range(7)),
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekend": frozenset({5, 6}),
    "weekends": frozenset({5, 6}),
}


# --- scalar parsers ---------------------------------------------------------------


def parse_duration(raw: str, *, allow_zero: bool = True) -> timedelta:
    """`1d`, `36h`, `2w`, `90m`, `1d 12h`, `3 days`: a wait or period as a timedelta."""
    text = raw.strip()
    if not _DURATION.fullmatch(text):
        if re.search(r"\d\s*(mo|months?|y|yrs?|years?)\b", text, re.IGNORECASE):
            raise ValidationError(
                f"invalid duration {raw!r}: months and years vary in length",
                hint="write days or weeks, e.g. 180d or 26w",
            )
        raise ValidationError(
            f"invalid duration {raw!r}",
            hint="write a number and a unit: 90m (minutes), 36h (hours), 3d (days), 2w (weeks)",
        )
    total = timedelta()
    for part in _DURATION_PART.finditer(text):
        count = int(part.group(1)) if len(part.group(1)) <= 7 else 10**7
        total += count * _UNIT[part.group(2)[0].lower()]
        if total > MAX_DURATION:
            raise ValidationError(f"duration {raw!r} is longer than ten years")
    if not allow_zero and total <= timedelta():
        raise ValidationError(f"duration {raw!r} must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    """Compact text that `parse_duration` reads back as `value` (`1d`, `36h`, `1h30m`)."""
    minutes = int(value.total_seconds() // 60)
    if minutes == 0:
        return "0m"
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{mins}m" if mins else "")


def parse_clock(raw: str, *, allow_24: bool = False) -> time:
    """`"09:00"`, `"9:30"` or `"17"`: a wall-clock time; `24:00` (end of day) when allowed."""
    match = _CLOCK.fullmatch(raw.strip())
    hour = int(match.group(1)) if match else -1
    minute = int(match.group(2) or 0) if match else -1
    if allow_24 and hour == 24 and minute == 0:
        return END_OF_DAY
    if not match or not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValidationError(f"invalid time {raw!r}", hint='write a 24-hour time in quotes, e.g. "09:30"')
    return time(hour, minute)


def format_clock(value: time) -> str:
    return "24:00" if value == END_OF_DAY else value.strftime("%H:%M")


def parse_days(raw: str | Iterable[str]) -> frozenset[int]:
    """`mon-fri`, `mon,wed,fri`, `[mon, wed]`, `all`, `weekdays`: weekday numbers (0 = Monday)."""
    items = raw.split(",") if isinstance(raw, str) else [str(item) for item in raw]
    days: set[int] = set()
    for item in items:
        text = item.strip().lower()
        if text in _DAY_ALIASES:
            days |= _DAY_ALIASES[text]
            continue
        if "-" in text:
            first, _, last = text.partition("-")
            begin, end = _day(first, raw), _day(last, raw)
            span = (end - begin) % 7
            days |= {(begin + step) % 7 for step in range(span + 1)}
        else:
            days.add(_day(text, raw))
    if not days:
        raise ValidationError("no days given", hint="write e.g. mon-fri, mon,wed,fri or all")
    return frozenset(days)


def _day(text: str, raw: object) -> int:
    name = text.strip().lower()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(name)
    raise ValidationError(
        f"invalid day {text.strip()!r} in {raw!r}",
        hint="use mon, tue, wed, thu, fri, sat, sun, ranges such as mon-fri, or all",
    )


def format_days(days: frozenset[int]) -> str:
    """Compact text for a set of weekdays: `mon-fri`, `mon,wed,fri`, `all`."""
    if days == frozenset(range(7)):
        return "all"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = [
        f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}" if len(run) > 2 else ",".join(DAY_NAMES[d] for d in run)
        for run in runs
    ]
    return ",".join(parts)


def parse_hours(raw: str) -> tuple[time, time]:
    """`"09:00-17:00"`: start inclusive, end exclusive, end after start (`24:00` = midnight)."""
    first, sep, last = raw.partition("-")
    if not sep:
        raise ValidationError(f"invalid hours {raw!r}", hint='write a start and an end, e.g. "09:00-17:00"')
    start = parse_clock(first)
    end = parse_clock(last, allow_24=True)
    if end <= start:
        raise ValidationError(
            f"hours {raw!r} end before they start; overnight windows are not supported",
            hint='a send window lies within one day, e.g. "09:00-17:00" (use "24:00" for midnight)',
        )
    return start, end


def check_rule_name(raw: str) -> str:
    """Rule names key the outbox, so they are short, lower-case and stable."""
    if _RULE_NAME.fullmatch(raw):
        return raw
    slug = re.sub(r"[^a-z0-9_-]+", "-", raw.strip().lower()).strip("-_")[:100]
    raise ValidationError(
        f"invalid rule name {raw!r}",
        hint="use lower-case letters, digits, - and _ (at most 100)" + (f", e.g. {slug!r}" if slug else ""),
    )


# --- values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local days and hours in which mail may go out (the customer's own time)."""

    days: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValidationError("a send window needs days numbered 0 (Monday) to 6 (Sunday)")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValidationError("send window hours are wall-clock times without a timezone")
        if self.end <= self.start:
            raise ValidationError("a send window must end after it starts")

    def contains(self, local_dt: datetime) -> bool:
        """True when the wall-clock `local_dt` (customer's zone) lies in the window."""
        if local_dt.weekday() not in self.days:
            return False
        clock = local_dt.time()
        if self.end == END_OF_DAY:
            return clock >= self.start
        return self.start <= clock < self.end

    def describe(self) -> str:
        return f"{format_days(self.days)} {format_clock(self.start)}-{format_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class AfterPurchase:
    """Once per purchase, `wait` after it (e.g. a thank-you a day later)."""

    wait: timedelta
    key: ClassVar[str] = "after"

    def describe(self) -> str:
        return f"after purchase, wait {format_duration(self.wait)}"


@dataclass(frozen=True, slots=True)
class AnniversaryOf:
    """Once a year on the month and day of a customer date, at the rule's send time.

    `field` is first_purchase, last_purchase, birthday, customer_since or custom.NAME;
    `years` (years since that date) limits it to round numbers such as {1, 5, 10};
    `leap_day` says where a Feb 29 date falls in common years (`None`: the planner's default).
    """

    field: str
    years: frozenset[int] | None = None
    leap_day: LeapDay | None = None
    key: ClassVar[str] = "anniversary_of"

    def describe(self) -> str:
        text = f"anniversary of {self.field}"
        if self.years is not None:
            text += f" (years {', '.join(str(y) for y in sorted(self.years))})"
        if self.leap_day is not None:
            text += f" (Feb 29 on {'Mar 1' if self.leap_day == 'mar1' else 'Feb 28'} in common years)"
        return text


@dataclass(frozen=True, slots=True)
class NoReplyTo:
    """A follow-up when the customer has not replied `wait` after a message; a reply cancels it.

    `source` is `any_outbound` (any message sent to the customer except this rule's own
    follow-ups) or the name of another rule. After the first follow-up, `repeat_times`
    more go out `repeat_every` apart while there is still no reply.
    """

    source: str
    wait: timedelta
    repeat_times: int = 0
    repeat_every: timedelta = timedelta()
    key: ClassVar[str] = "no_reply_to"

    @property
    def steps(self) -> int:
        """How many follow-ups at most (the first plus the repeats)."""
        return 1 + self.repeat_times

    def delay(self, step: int) -> timedelta:
        """Time from the original message to follow-up `step` (1-based)."""
        if not 1 <= step <= self.steps:
            raise ValueError(f"step {step} is outside 1..{self.steps}")
        return self.wait + (step - 1) * self.repeat_every

    def describe(self) -> str:
        text = f"no reply to {self.source} within {format_duration(self.wait)}"
        if self.repeat_times:
            text += f", then {self.repeat_times} more every {format_duration(self.repeat_every)}"
        return text


@dataclass(frozen=True, slots=True)
class NoPurchaseFor:
    """Once per lapse: `period` after the customer's last purchase (a new purchase re-arms it)."""

    period: timedelta
    key: ClassVar[str] = "no_purchase_for"

    def describe(self) -> str:
        return f"no purchase for {format_duration(self.period)}"


@dataclass(frozen=True, slots=True)
class OnDate:
    """A one-off campaign; a naive `at` is the customer's local time, an aware one is absolute."""

    at: datetime
    key: ClassVar[str] = "on"

    def describe(self) -> str:
        if self.at.tzinfo is None:
            return f"on {self.at:%Y-%m-%d %H:%M} (customer's local time)"
        return f"on {self.at.isoformat(timespec='minutes')}"


@dataclass(frozen=True, slots=True)
class OnEvent:
    """Once per tracked event (`opened`, `clicked`, `attended`), `wait` after it."""

    kind: str
    wait: timedelta
    key: ClassVar[str] = "event"

    def describe(self) -> str:
        return f"event {self.kind}, wait {format_duration(self.wait)}"


Trigger = AfterPurchase | AnniversaryOf | NoReplyTo | NoPurchaseFor | OnDate | OnEvent


@dataclass(frozen=True, slots=True)
class Filters:
    """Which customers a rule is for; an empty set or `None` does not filter.

    Sets match when the customer has any of the values. `statuses` empty means leads
    and customers; archived customers never get automated mail whatever the filter.
    Spend is the customer's lifetime total in `spend_currency`, in minor units.
    `bought` holds product names as written (compare case-insensitively).
    """

    tags: frozenset[str] = frozenset()
    lead_sources: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    spend_min_minor: int | None = None
    spend_max_minor: int | None = None
    spend_currency: str | None = None
    bought: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    """One named rule; `source` is `file:line` for messages that point back at the YAML.

    `start` and `end` (both inclusive, optional) limit the rule to triggers that happen
    on those dates, in the customer's local time: the purchase (`after: purchase`), the
    event (`event:`), the message without a reply (`no_reply_to:`; its follow-ups go
    with it), the day the period without a purchase runs out (`no_purchase_for:`), the
    anniversary day (`anniversary_of:`), the campaign's date (`on:`). They do not bound
    when the email goes out: a `wait` or a send window may put that after `end`.
    """

    name: str
    trigger: Trigger
    template: str
    filters: Filters = field(default_factory=Filters)
    send_window: SendWindow | None = None
    send_time: time = DEFAULT_SEND_TIME
    sender: str | None = None
    owner: str | None = None
    enabled: bool = True
    start: date | None = None
    end: date | None = None
    source: str = ""

    def active_on(self, day: date) -> bool:
        """Enabled, and `day` (the local date a trigger happens) lies within `start`..`end`
        (both inclusive)."""
        if not self.enabled:
            return False
        if self.start is not None and day < self.start:
            return False
        return self.end is None or day <= self.end


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule of every rule file, names unique; `files` are the files they came from."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()

    def by_name(self) -> Mapping[str, Rule]:
        return {rule.name: rule for rule in self.rules}
