"""Login throttle arithmetic on hand-computed cases: when a counter locks, for how long,
when it forgets, and how a reserved failure is withdrawn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailcrm.domain.throttle import (
    ACCOUNT_POLICY,
    Attempts,
    ThrottlePolicy,
    address_key,
    after_failure,
    current,
    retry_after,
    withdraw,
)

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(
    limit=3,
    window=timedelta(minutes=10),
    first_lockout=timedelta(seconds=30),
    max_lockout=timedelta(minutes=4),
)


@pytest.mark.parametrize(
    ("failures", "lockout"),
    [(1, 0), (2, 0), (3, 30), (4, 60), (5, 120), (6, 240), (7, 240), (500, 240)],
)
def test_the_lockout_doubles_from_the_limit_up_to_the_cap(failures: int, lockout: int) -> None:
    assert POLICY.lockout(failures) == timedelta(seconds=lockout)


def test_the_default_account_policy_locks_on_the_fifth_failure_for_thirty_seconds() -> None:
    state = Attempts()
    for minute in range(4):
        state = after_failure(state, ACCOUNT_POLICY, T0 + timedelta(minutes=minute))
        assert retry_after(state, T0 + timedelta(minutes=minute)) is None
    state = after_failure(state, ACCOUNT_POLICY, T0 + timedelta(minutes=4))
    assert retry_after(state, T0 + timedelta(minutes=4)) == timedelta(seconds=30)


def test_failures_lock_then_the_lock_runs_out() -> None:
    state = Attempts()
    state = after_failure(state, POLICY, T0)
    state = after_failure(state, POLICY, T0 + timedelta(seconds=5))
    assert state == Attempts(2, T0 + timedelta(seconds=5), None)
    state = after_failure(state, POLICY, T0 + timedelta(seconds=10))
    assert state.locked_until == T0 + timedelta(seconds=40)
    assert retry_after(state, T0 + timedelta(seconds=15)) == timedelta(seconds=25)
    assert retry_after(state, T0 + timedelta(seconds=40)) is None
    # The next failure after the lock doubles it: 60 s from that failure.
    state = after_failure(state, POLICY, T0 + timedelta(seconds=50))
    assert state == Attempts(4, T0 + timedelta(seconds=50), T0 + timedelta(seconds=110))


def test_a_counter_quiet_for_the_window_is_forgotten() -> None:
    state = Attempts(2, T0, None)
    assert current(state, POLICY, T0 + timedelta(minutes=9, seconds=59)) == state
    assert current(state, POLICY, T0 + timedelta(minutes=10)) == Attempts()
    # The third failure after a quiet window is a first failure again: no lock.
    assert after_failure(state, POLICY, T0 + timedelta(minutes=10)) == Attempts(1, T0 + timedelta(minutes=10))


def test_the_window_counts_from_the_end_of_the_lock() -> None:
    locked = Attempts(6, T0, T0 + timedelta(minutes=4))
    assert current(locked, POLICY, T0 + timedelta(minutes=13)) == locked  # 9 min after the lock ended
    assert current(locked, POLICY, T0 + timedelta(minutes=14)) == Attempts()
    # Still remembered: the next failure locks for the cap again.
    again = after_failure(locked, POLICY, T0 + timedelta(minutes=13))
    assert again == Attempts(7, T0 + timedelta(minutes=13), T0 + timedelta(minutes=17))


def test_withdrawing_the_failure_that_locked_unlocks() -> None:
    state = after_failure(Attempts(2, T0, None), POLICY, T0 + timedelta(seconds=1))
    assert state.locked_until is not None
    assert withdraw(state, POLICY) == Attempts(2, T0 + timedelta(seconds=1), None)
    assert withdraw(Attempts(1, T0, None), POLICY) == Attempts()
    assert withdraw(Attempts(), POLICY) == Attempts()
    # Earlier failures past the limit keep their lock.
    deep = Attempts(5, T0, T0 + timedelta(minutes=2))
    assert withdraw(deep, POLICY) == Attempts(4, T0, T0 + timedelta(minutes=2))


@pytest.mark.parametrize(
    ("client", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
        ("", "unknown"),
    ],
)
def test_client_addresses_are_keyed_by_host_or_ipv6_network(client: str, key: str) -> None:
    assert address_key(client) == key
