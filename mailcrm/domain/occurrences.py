"""Occurrences: when a rule falls due for one customer, as UTC instants inside the send window.

Pure: the store finds the candidates with SQL, this module computes their local send
times (DST gaps and folds, Feb 29, send windows) and the occurrence keys, and marks
occurrences found too late (the daemon was down longer than the grace period) as
skipped instead of sending them late.

A purchase given as a date without a time happened on the customer's local calendar day
(`local_date`), at no particular moment; its email is due at the rule's `send_time` on
the local day `wait` (or the `no_purchase_for` period) later, in whole days on the
customer's calendar, whatever the DST changes between. A purchase with a time counts
from its instant, as events and emails do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from mailcrm.domain.calendar import (
    anniversaries,
    catch_up,
    local_send_instant,
    next_in_window,
    occurrence_key,
)
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    Rule,
)

LeapDay = Literal["feb28", "mar1"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A customer and the fact that may make a rule due (found by the store's SQL)."""

    customer_id: int
    timezone: str | None
    language: str | None
    owner: str | None
    anchor: datetime | date | str | None  # purchase time, anniversary base, last purchase, ...
    ref: str | None = None  # purchase id, message id, event id: part of the occurrence key
    local_date: date | None = None  # a purchase's local calendar date, as stored
    timed: bool = True  # false: the purchase was given as a date only


@dataclass(frozen=True, slots=True)
class PlanContext:
    """The planning pass: which due times it covers and how it treats lateness."""

    start: datetime  # UTC: occurrences due at or after this are considered
    end: datetime  # UTC: ... and before this
    now: datetime
    grace: timedelta  # overdue by less than this: still sent; older: recorded as skipped
    default_timezone: str
    leap_day: LeapDay = "feb28"


def _zone(candidate: Candidate, context: PlanContext) -> str:
    return candidate.timezone or context.default_timezone


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _local_date(value: datetime | date, zone: str) -> date:
    """The customer's local date of an instant; a date is already local."""
    if isinstance(value, datetime):
        return _aware(value).astimezone(ZoneInfo(zone)).date()
    return value


def _base_date(anchor: datetime | date | str, zone: str) -> date | None:
    if isinstance(anchor, datetime):
        return _aware(anchor).astimezone(ZoneInfo(zone)).date()
    if isinstance(anchor, date):
        return anchor
    try:
        return date.fromisoformat(str(anchor)[:10])
    except ValueError:
        return None


class _Memo:
    """Per-pass caches: a million customers share a few zones and a few local days, so
    the calendar work (local range, send instant, send window) is done once per pair."""

    def __init__(self, rule: Rule, context: PlanContext) -> None:
        self.rule = rule
        self.context = context
        self._ranges: dict[str, tuple[date, date]] = {}
        self._sends: dict[tuple[date, str], datetime] = {}
        self._walls: dict[str, datetime] = {}  # one campaign date-time per rule

    def local_range(self, zone: str) -> tuple[date, date]:
        """The local dates (with a day of slack) an anniversary in `zone` may fall on."""
        found = self._ranges.get(zone)
        if found is None:
            tz = ZoneInfo(zone)
            found = (
                self.context.start.astimezone(tz).date() - timedelta(days=1),
                self.context.end.astimezone(tz).date() + timedelta(days=1),
            )
            self._ranges[zone] = found
        return found

    def send_instant(self, day: date, zone: str) -> datetime:
        """The rule's send time on local `day`, moved into its send window."""
        key = (day, zone)
        found = self._sends.get(key)
        if found is None:
            due = local_send_instant(day, self.rule.send_time, zone)
            found = next_in_window(due, zone, self.rule.send_window)
            self._sends[key] = found
        return found

    def days_after(self, day: date, offset: timedelta, zone: str) -> datetime:
        """The rule's send time `offset` after local `day` (whole days on the local calendar,
        the rest as elapsed time), moved into the send window."""
        days = timedelta(days=offset.days)
        rest = offset - days
        if not rest:
            return self.send_instant(day + days, zone)
        due = local_send_instant(day + days, self.rule.send_time, zone) + rest
        return next_in_window(due, zone, self.rule.send_window)

    def wall_instant(self, at: datetime, zone: str) -> datetime:
        """A naive date-time as wall time in `zone`, moved into the send window."""
        found = self._walls.get(zone)
        if found is None:
            due = local_send_instant(at.date(), at.time(), zone)
            found = next_in_window(due, zone, self.rule.send_window)
            self._walls[zone] = found
        return found


def _due_times(
    rule: Rule, candidate: Candidate, context: PlanContext, memo: _Memo
) -> Iterator[tuple[str, datetime, str | None, datetime | date]]:
    """(occurrence key, due instant UTC already in the send window, in_reply_to, trigger) for
    one candidate; `trigger` is when the trigger happened (an instant, or a local date),
    before any wait or send window: what a rule's `start` and `end` are compared with."""
    trigger = rule.trigger
    zone = _zone(candidate, context)
    anchor = candidate.anchor
    window = rule.send_window
    day = candidate.local_date
    if isinstance(trigger, AfterPurchase) and day is not None and not candidate.timed:
        yield occurrence_key(trigger, ref=candidate.ref), memo.days_after(day, trigger.wait, zone), None, day
    elif isinstance(trigger, AfterPurchase | OnEvent) and isinstance(anchor, datetime):
        at = _aware(anchor)
        due = next_in_window(at + trigger.wait, zone, window)
        yield occurrence_key(trigger, ref=candidate.ref), due, None, day or at
    elif isinstance(trigger, NoPurchaseFor) and day is not None and not candidate.timed:
        due = memo.days_after(day, trigger.period, zone)
        yield occurrence_key(trigger, ref=day.isoformat()), due, None, day + trigger.period
    elif isinstance(trigger, NoPurchaseFor) and isinstance(anchor, datetime):
        last = _aware(anchor)
        lapse = last + trigger.period
        due = next_in_window(lapse, zone, window)
        # Keyed by the UTC date, as lapses always were: rows planned before local dates
        # existed keep their keys, so an upgrade plans no lapse twice.
        yield occurrence_key(trigger, ref=last.date().isoformat()), due, None, lapse
    elif isinstance(trigger, NoReplyTo) and isinstance(anchor, datetime) and candidate.ref:
        sent = _aware(anchor)
        for step in range(1, trigger.steps + 1):
            key = occurrence_key(trigger, ref=candidate.ref, step=step)
            yield key, next_in_window(sent + trigger.delay(step), zone, window), candidate.ref, sent
    elif isinstance(trigger, OnDate):
        at = trigger.at
        if at.tzinfo is None:
            yield occurrence_key(trigger), memo.wall_instant(at, zone), None, at.date()
        else:
            yield occurrence_key(trigger), next_in_window(at.astimezone(UTC), zone, window), None, at
    elif isinstance(trigger, AnniversaryOf) and anchor is not None:
        base = _base_date(anchor, zone)
        if base is None:
            return
        local_start, local_end = memo.local_range(zone)
        leap_day = trigger.leap_day or context.leap_day
        for day in anniversaries(base, local_start, local_end, leap_day=leap_day, years=trigger.years):
            yield occurrence_key(trigger, day=day), memo.send_instant(day, zone), None, day


def plan_rule(rule: Rule, candidates: Iterable[Candidate], context: PlanContext) -> list[PlannedEmail]:
    """The emails `rule` asks for among `candidates`, due in [context.start, context.end).

    A rule's `start` and `end` (inclusive, the customer's local dates) bound the date its
    trigger happens, not the date the email is due (see `Rule`): an event on `end` is
    still thanked for the day after.
    """
    if not rule.enabled:
        return []
    memo = _Memo(rule, context)
    bounded = rule.start is not None or rule.end is not None
    planned = []
    for candidate in candidates:
        zone = _zone(candidate, context)
        for occurrence, due, in_reply_to, happened in _due_times(rule, candidate, context, memo):
            if not context.start <= due < context.end:
                continue
            if bounded and not rule.active_on(_local_date(happened, zone)):
                continue
            verdict = catch_up(due, context.now, context.grace)
            planned.append(
                PlannedEmail(
                    rule=rule.name,
                    customer_id=candidate.customer_id,
                    occurrence=occurrence,
                    template=rule.template,
                    due_at=due,
                    sender=rule.sender,
                    in_reply_to=in_reply_to,
                    state="skipped" if verdict == "late" else "due",
                    note="late: due more than the grace period ago" if verdict == "late" else None,
                )
            )
    return planned
