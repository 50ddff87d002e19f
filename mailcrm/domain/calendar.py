"""Time semantics of automated email: local send instants, anniversaries, send windows.

Everything is reckoned in the customer's IANA zone and returned as aware UTC, the form
the outbox stores. The rules that make sends happen exactly once:

- a local time that does not exist (a DST gap) moves to the first valid instant after
  the gap; a local time that exists twice (a fold) means its first occurrence;
- an anniversary happens once a year; Feb 29 falls on Feb 28 (or Mar 1) in common years;
- every occurrence has a stable key, so planning it again creates nothing new.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    LeapDay,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    SendWindow,
    Trigger,
)

CatchUp = Literal["send", "late", "future"]

OCCURRENCE_KEY_MAX = 100
# No zone changes its offset twice within this span, so sampling at it finds every transition.
_SAMPLE = timedelta(hours=12)
_SCAN_DAYS = 9


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already (the store's convention)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _offset(stamp: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(stamp, zone).utcoffset()


def _transition(lo: datetime, hi: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (lo, hi] where the zone's offset changes (exactly one change there)."""
    low, high = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    before = _offset(low, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _transitions(lo: datetime, hi: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every offset change of `zone` in (lo, hi]."""
    found: list[datetime] = []
    left = lo
    while left < hi:
        right = min(left + _SAMPLE, hi)
        if left.astimezone(zone).utcoffset() != right.astimezone(zone).utcoffset():
            found.append(_transition(left, right, zone))
        left = right
    return found


def _existing(day: date, at: time, zone: ZoneInfo, fold: int) -> datetime | None:
    """The UTC instant showing wall time `day at` (occurrence `fold`), if that wall time exists."""
    wall = datetime.combine(day, at.replace(tzinfo=None))
    instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    back = instant.astimezone(zone)
    if back.replace(tzinfo=None) != wall or back.fold != fold:
        return None
    return instant


def local_send_instant(day: date, at: time, zone: str) -> datetime:
    """The UTC instant of local `day at` in `zone`: never skipped, never doubled.

    In a DST gap the result is the first valid instant after the gap (02:30 on
    2025-03-30 in Europe/Berlin gives 03:00 local); in a fold it is the first occurrence.
    """
    tz = _zone(zone)
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # A gap: fold=1 reads the wall time with the offset after the change (an instant before
    # it), fold=0 with the offset before (an instant after it); the change lies between.
    earlier = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return _transition(earlier, first, tz)


def instant_of(at: datetime, zone: str) -> datetime:
    """A date-time as UTC: a naive one is wall time in `zone` (gaps and folds as above)."""
    if at.tzinfo is None:
        return local_send_instant(at.date(), at.time(), zone)
    return at.astimezone(UTC)


def _on_day(base: date, year: int, leap_day: LeapDay) -> date:
    if base.month == 2 and base.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28) if leap_day == "feb28" else date(year, 3, 1)
    return base.replace(year=year)


def anniversaries(
    base: date,
    start: date,
    end: date,
    *,
    leap_day: LeapDay = "feb28",
    years: frozenset[int] | None = None,
) -> list[date]:
    """Each year's return of `base` (month and day) in [start, end], oldest first.

    The base year itself is not an anniversary. `years` keeps only the given numbers of
    years since `base` (1, 5, 10, ...). Exactly one date per year.
    """
    result: list[date] = []
    for year in range(max(start.year, base.year + 1), end.year + 1):
        if years is not None and year - base.year not in years:
            continue
        day = _on_day(base, year, leap_day)
        if start <= day <= end:
            result.append(day)
    return result


def next_in_window(instant: datetime, zone: str, window: SendWindow | None) -> datetime:
    """The first instant >= `instant` whose wall-clock time in `zone` lies in `window`, as UTC.

    A naive `instant` is taken as UTC; no window means any time.

    The window opens either when the clock reaches its start on an allowed day or when
    a DST change moves the clock into it; both kinds of instant are candidates, and the
    earliest one that is inside the window wins.
    """
    begin = _as_utc(instant)
    if window is None:
        return begin
    tz = _zone(zone)
    if window.contains(begin.astimezone(tz)):
        return begin
    first_day = begin.astimezone(tz).date() - timedelta(days=1)
    for _ in range(8):
        days = [first_day + timedelta(days=n) for n in range(_SCAN_DAYS)]
        lo = datetime.combine(days[0], time(), UTC) - timedelta(days=1)
        hi = datetime.combine(days[-1], time(), UTC) + timedelta(days=2)
        candidates = _transitions(max(lo, begin), hi, tz)
        for day in days:
            if day.weekday() in window.days:
                for fold in (0, 1):
                    found = _existing(day, window.start, tz, fold)
                    if found is not None:
                        candidates.append(found)
        inside = [c for c in candidates if c >= begin and window.contains(c.astimezone(tz))]
        if inside:
            return min(inside)
        first_day += timedelta(days=_SCAN_DAYS - 1)
    raise ValueError(f"send window {window.describe()} never opens in {zone}")


def _bounded(prefix: str, ref: str, suffix: str = "") -> str:
    """`prefix:ref[:suffix]`, with `ref` hashed when the key would not fit or is not plain text."""
    text = ref.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise ValueError(f"an occurrence of kind {prefix!r} needs a reference")
    tail = f":{suffix}" if suffix else ""
    key = f"{prefix}:{text}{tail}"
    if len(key) <= OCCURRENCE_KEY_MAX and text.isprintable() and not any(ch.isspace() for ch in text):
        return key
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{prefix}:sha256-{digest}{tail}"


def occurrence_key(
    trigger: Trigger,
    *,
    day: date | None = None,
    ref: str | int | None = None,
    step: int = 1,
) -> str:
    """A stable key (at most 100 characters) for one occurrence of a rule for one customer.

    - anniversary: `day` (the date it falls on) gives `year:2027`; keyed by year so a
      corrected base date or leap-day setting cannot send a second card that year;
    - after purchase: `ref` = purchase id gives `purchase:123`;
    - no purchase for: `ref` = the date of the last purchase gives `lapse:2026-03-12` (a
      new purchase re-arms): its local date when it was given without a time, else the
      UTC date of its instant (the key such lapses always had);
    - no reply: `ref` = Message-ID of the unanswered message, `step` = 1.. gives
      `followup:<id>:2`;
    - event: `ref` = event id gives `event:77`;
    - one-off date: `campaign` (once per customer, even if the date is edited).
    """
    if isinstance(trigger, AnniversaryOf):
        if day is None:
            raise ValueError("an anniversary occurrence needs its day")
        return f"year:{day.year:04d}"
    if isinstance(trigger, OnDate):
        return "campaign"
    if ref is None:
        raise ValueError(f"a {trigger.key!r} occurrence needs a reference")
    if isinstance(trigger, AfterPurchase):
        return _bounded("purchase", str(ref))
    if isinstance(trigger, NoPurchaseFor):
        return _bounded("lapse", str(ref))
    if isinstance(trigger, OnEvent):
        return _bounded("event", str(ref))
    if isinstance(trigger, NoReplyTo):
        if not 1 <= step <= trigger.steps:
            raise ValueError(f"follow-up step {step} is outside 1..{trigger.steps}")
        return _bounded("followup", str(ref), str(step))
    raise TypeError(f"unknown trigger {trigger!r}")


def catch_up(due: datetime, now: datetime, grace: timedelta) -> CatchUp:
    """What to do with an occurrence at `now`: `send` it, it is in the `future`, or too `late`.

    A daemon that was down sends what is overdue by less than `grace`; older occurrences
    are recorded as skipped instead of surprising a customer days later.
    """
    if grace < timedelta():
        raise ValueError("grace must not be negative")
    due_utc, now_utc = _as_utc(due), _as_utc(now)
    if due_utc > now_utc:
        return "future"
    overdue = now_utc - due_utc
    return "send" if overdue == timedelta() or overdue < grace else "late"
