"""Time semantics: DST gaps and folds, Feb 29, send windows, occurrence keys, catch-up after downtime."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailcrm.domain.calendar import (
    OCCURRENCE_KEY_MAX,
    anniversaries,
    catch_up,
    instant_of,
    local_send_instant,
    next_in_window,
    occurrence_key,
)
from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    SendWindow,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = sorted(available_timezones())
BERLIN = "Europe/Berlin"
WEEKDAYS_9_TO_5 = SendWindow(days=frozenset(range(5)), start=time(9), end=time(17))

zones = st.sampled_from(ZONES)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31))
clock_times = st.times()
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)


def _wall(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _is_transition(instant: datetime, zone: str) -> bool:
    """The zone's offset changes exactly at `instant`."""
    tz = ZoneInfo(zone)
    return (instant - timedelta(seconds=1)).astimezone(tz).utcoffset() != instant.astimezone(tz).utcoffset()


# --- local_send_instant: DST gap and fold ---------------------------------------------------


def test_dst_gap_moves_to_first_valid_instant() -> None:
    result = local_send_instant(date(2025, 3, 30), time(2, 30), BERLIN)
    assert result == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert _wall(result, BERLIN) == datetime(2025, 3, 30, 3, 0)


def test_dst_fold_takes_first_occurrence() -> None:
    result = local_send_instant(date(2025, 10, 26), time(2, 30), BERLIN)
    assert result == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST, not 02:30 CET
    assert result.tzinfo is UTC


def test_skipped_day_moves_to_next_valid_instant() -> None:
    # Samoa skipped 2011-12-30 entirely when it crossed the date line.
    result = local_send_instant(date(2011, 12, 30), time(9), "Pacific/Apia")
    assert _wall(result, "Pacific/Apia") == datetime(2011, 12, 31, 0, 0)


@SETTINGS
@given(zone=zones, day=days, at=clock_times)
def test_local_send_instant_round_trips(zone: str, day: date, at: time) -> None:
    result = local_send_instant(day, at, zone)
    assert result.utcoffset() == timedelta(0)
    requested = datetime.combine(day, at)
    wall = _wall(result, zone)
    if wall != requested:
        # Only in a gap: the result is the change itself, the first wall time after the gap.
        assert _is_transition(result, zone)
        assert wall > requested
        assert _wall(result - timedelta(microseconds=1), zone) < requested


@SETTINGS
@given(zone=zones, day=days, at=clock_times, gap=st.integers(min_value=1, max_value=400))
def test_local_send_instant_is_monotone_in_day(zone: str, day: date, at: time, gap: int) -> None:
    later = day + timedelta(days=gap)
    assert local_send_instant(day, at, zone) < local_send_instant(later, at, zone)


def _changes(zone: str, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """(instant, offset before, offset after) of each offset change of `zone` in `year`."""
    tz = ZoneInfo(zone)
    found = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        step = probe + timedelta(hours=12)
        before, after = probe.astimezone(tz).utcoffset(), step.astimezone(tz).utcoffset()
        if before != after and before is not None and after is not None:
            low, high = int(probe.timestamp()), int(step.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, tz).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            found.append((datetime.fromtimestamp(high, UTC), before, after))
        probe = step
    return found


@SETTINGS
@given(zone=zones, year=st.integers(min_value=2000, max_value=2040), fraction=st.floats(0, 0.999))
def test_every_gap_and_fold_of_every_zone(zone: str, year: int, fraction: float) -> None:
    """Wall times inside a gap go to the change itself; inside a fold, to the first occurrence."""
    changes = _changes(zone, year)
    assume(changes)
    for change, before, after in changes:
        if after > before:  # a gap: walls [change+before, change+after) never show
            wall = (change + before + (after - before) * fraction).replace(tzinfo=None)
            assert local_send_instant(wall.date(), wall.time(), zone) == change
        else:  # a fold: walls [change+after, change+before) show twice
            wall = (change + after + (before - after) * fraction).replace(tzinfo=None)
            result = local_send_instant(wall.date(), wall.time(), zone)
            assert result == wall.replace(tzinfo=UTC) - before  # the earlier, pre-change offset
            assert result < change


# --- anniversaries: Feb 29 ------------------------------------------------------------


def test_feb_29_birthday_in_common_and_leap_years() -> None:
    found = anniversaries(date(2000, 2, 29), date(2025, 1, 1), date(2032, 12, 31))
    assert found == [
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]
    mar1 = anniversaries(date(2000, 2, 29), date(2025, 1, 1), date(2028, 12, 31), leap_day="mar1")
    assert mar1 == [date(2025, 3, 1), date(2026, 3, 1), date(2027, 3, 1), date(2028, 2, 29)]


def test_base_year_is_not_an_anniversary_and_years_filter() -> None:
    base = date(2020, 6, 15)
    assert anniversaries(base, date(2020, 1, 1), date(2021, 12, 31)) == [date(2021, 6, 15)]
    found = anniversaries(base, date(2020, 1, 1), date(2035, 12, 31), years=frozenset({1, 5, 10}))
    assert found == [date(2021, 6, 15), date(2025, 6, 15), date(2030, 6, 15)]
    assert anniversaries(base, date(2030, 1, 1), date(2029, 1, 1)) == []


@SETTINGS
@given(
    base=st.dates(min_value=date(1900, 1, 1), max_value=date(2040, 12, 31)),
    start=days,
    span=st.integers(min_value=0, max_value=3000),
    leap_day=st.sampled_from(["feb28", "mar1"]),
    years=st.none() | st.frozensets(st.integers(min_value=1, max_value=150), max_size=6),
)
def test_anniversaries_one_per_year(
    base: date, start: date, span: int, leap_day: str, years: frozenset[int] | None
) -> None:
    end = start + timedelta(days=span)
    found = anniversaries(base, start, end, leap_day="mar1" if leap_day == "mar1" else "feb28", years=years)
    assert found == sorted(found)
    assert len({d.year for d in found}) == len(found)
    for day in found:
        assert start <= day <= end and day.year > base.year
        if years is not None:
            assert day.year - base.year in years
        if (base.month, base.day) != (2, 29):
            assert (day.month, day.day) == (base.month, base.day)
        elif calendar.isleap(day.year):
            assert (day.month, day.day) == (2, 29)
        else:
            assert (day.month, day.day) == ((2, 28) if leap_day == "feb28" else (3, 1))
    # Every year strictly inside the range (and wanted) has its date.
    for year in range(max(start.year + 1, base.year + 1), end.year):
        if years is None or year - base.year in years:
            assert any(d.year == year for d in found)


# --- send windows in the customer's local time -------------------------------------------------------------


def _earliest_by_minute(instant: datetime, zone: str, window: SendWindow) -> datetime:
    """Slow oracle: the first in-window instant, checking `instant` then every whole minute."""
    tz = ZoneInfo(zone)
    if window.contains(instant.astimezone(tz)):
        return instant
    probe = instant.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 15):
        if window.contains(probe.astimezone(tz)):
            return probe
        probe += timedelta(minutes=1)
    raise AssertionError("window never opened")


windows = st.builds(
    lambda days, start, length: SendWindow(
        days=days,
        start=time(start // 60, start % 60),
        end=time.max if start + length >= 24 * 60 else time((start + length) // 60, (start + length) % 60),
    ),
    st.frozensets(st.integers(min_value=0, max_value=6), min_size=1),
    st.integers(min_value=0, max_value=23 * 60 + 59),
    st.integers(min_value=1, max_value=24 * 60),
)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
@settings(max_examples=150, deadline=None)
@given(instant=instants)
def test_window_far_from_utc(zone: str, instant: datetime) -> None:
    result = next_in_window(instant, zone, WEEKDAYS_9_TO_5)
    local = result.astimezone(ZoneInfo(zone))
    assert local.weekday() < 5 and time(9) <= local.time() < time(17)
    assert result >= instant
    assert result == _earliest_by_minute(instant, zone, WEEKDAYS_9_TO_5)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from([BERLIN, "America/Sao_Paulo", "Australia/Lord_Howe", "America/Havana"]) | zones,
    instant=instants,
    window=windows,
)
def test_window_is_earliest_instant_in_any_zone(zone: str, instant: datetime, window: SendWindow) -> None:
    result = next_in_window(instant, zone, window)
    assert window.contains(result.astimezone(ZoneInfo(zone)))
    assert result == _earliest_by_minute(instant, zone, window)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=zones,
    year=st.integers(min_value=2000, max_value=2040),
    before=st.integers(min_value=0, max_value=2 * 24 * 60),
    window=windows,
)
def test_window_across_dst_changes(zone: str, year: int, before: int, window: SendWindow) -> None:
    changes = _changes(zone, year)
    assume(changes)
    for change, _, _ in changes:
        instant = change - timedelta(minutes=before)
        result = next_in_window(instant, zone, window)
        assert result == _earliest_by_minute(instant, zone, window)


def test_window_opens_at_gap_end_when_start_is_skipped() -> None:
    window = SendWindow(days=frozenset(range(7)), start=time(2, 30), end=time(4))
    result = next_in_window(datetime(2025, 3, 29, 23, 0, tzinfo=UTC), BERLIN, window)
    assert _wall(result, BERLIN) == datetime(2025, 3, 30, 3, 0)


def test_window_inside_is_unchanged_and_none_means_any_time() -> None:
    inside = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)  # Monday 10:00 in Berlin
    assert next_in_window(inside, BERLIN, WEEKDAYS_9_TO_5) == inside
    assert next_in_window(datetime(2025, 6, 1, 3, 0), BERLIN, None) == datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
    friday_evening = datetime(2025, 6, 6, 16, 0, tzinfo=UTC)  # 18:00 local
    assert _wall(next_in_window(friday_evening, BERLIN, WEEKDAYS_9_TO_5), BERLIN) == datetime(2025, 6, 9, 9)


# --- occurrence keys and catch-up after a clock jump ---------------------------------------------


def test_occurrence_keys_are_stable_and_short() -> None:
    birthday = AnniversaryOf(field="birthday")
    assert occurrence_key(birthday, day=date(2027, 2, 28)) == "year:2027"
    assert occurrence_key(AfterPurchase(wait=timedelta(days=1)), ref=123) == "purchase:123"
    assert occurrence_key(NoPurchaseFor(period=timedelta(days=180)), ref=9) == "lapse:9"
    assert occurrence_key(OnEvent(kind="attended", wait=timedelta()), ref="77") == "event:77"
    assert occurrence_key(OnDate(at=datetime(2026, 3, 1, 10))) == "campaign"
    follow = NoReplyTo(
        source="any_outbound", wait=timedelta(days=3), repeat_times=2, repeat_every=timedelta(days=4)
    )
    assert occurrence_key(follow, ref="<a1@mailcrm.example>", step=2) == "followup:a1@mailcrm.example:2"
    long_id = "<" + "x" * 300 + "@example.com>"
    key = occurrence_key(follow, ref=long_id, step=3)
    assert len(key) <= OCCURRENCE_KEY_MAX and key == occurrence_key(follow, ref=long_id, step=3)
    assert key != occurrence_key(follow, ref=long_id, step=2)
    with pytest.raises(ValueError):
        occurrence_key(follow, ref="<a@b>", step=4)
    with pytest.raises(ValueError):
        occurrence_key(birthday)


@given(ref=st.text(max_size=400) | st.integers(min_value=0), step=st.integers(min_value=1, max_value=3))
def test_occurrence_key_never_exceeds_column(ref: str | int, step: int) -> None:
    follow = NoReplyTo(
        source="any_outbound", wait=timedelta(days=1), repeat_times=2, repeat_every=timedelta(days=1)
    )
    if isinstance(ref, str) and not ref.strip().strip("<>").strip():
        return
    key = occurrence_key(follow, ref=ref, step=step)
    assert len(key) <= OCCURRENCE_KEY_MAX
    assert key.isprintable() and not any(ch.isspace() for ch in key)


def test_catch_up_after_downtime() -> None:
    now = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)
    grace = timedelta(hours=6)
    assert catch_up(now + timedelta(minutes=1), now, grace) == "future"
    assert catch_up(now, now, grace) == "send"
    assert catch_up(now - timedelta(hours=5), now, grace) == "send"
    assert catch_up(now - timedelta(hours=6), now, grace) == "late"
    assert catch_up(now - timedelta(days=3), now, grace) == "late"
    assert catch_up(datetime(2025, 6, 4, 11, 0), now, grace) == "send"  # naive = UTC
    with pytest.raises(ValueError):
        catch_up(now, now, timedelta(seconds=-1))


def test_rule_step_delays() -> None:
    follow = NoReplyTo(
        source="any_outbound", wait=timedelta(days=3), repeat_times=2, repeat_every=timedelta(days=4)
    )
    assert [follow.delay(step) for step in (1, 2, 3)] == [timedelta(3), timedelta(7), timedelta(11)]


def test_instant_of_naive_is_local_and_aware_is_absolute() -> None:
    assert instant_of(datetime(2025, 3, 30, 2, 30), BERLIN) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    bangkok = datetime(2026, 3, 1, 10, 0, tzinfo=ZoneInfo("Asia/Bangkok"))
    assert instant_of(bangkok, BERLIN) == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
