"""Login throttling arithmetic: failures per account and per client address, exponential
lock-outs, and when failures are forgotten. Values in, values out; the store keeps the
state in the database so every daemon on a shared PostgreSQL sees the same counts.

A counter (one per account email, known or not, and one per client address) counts
failed logins. Reaching `limit` locks it for `first_lockout`; each further failure
after a lock ends doubles the lock, up to `max_lockout`. A counter that stays quiet for
`window` after its last failure and after its lock ended is forgotten. While a counter
is locked no password is checked, and the refused attempt does not count (so waiting
out a lock is enough).

An attempt is counted as a failure *before* its password is checked (`after_failure`)
and withdrawn when the password was right (`withdraw`): many parallel guesses cannot
slip through in the time one hash takes, because each one reserves its count first.

Addresses are keyed by `address_key`: IPv4 as is, IPv6 by its /64 network, since one
host usually holds a whole /64 and could otherwise rotate addresses for free.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Counter(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


@dataclass(frozen=True)
class ThrottlePolicy:
    limit: int
    window: timedelta
    first_lockout: timedelta
    max_lockout: timedelta

    def lockout(self, failures: int) -> timedelta:
        """How long `failures` consecutive failures lock the counter (zero below the limit)."""
        if failures < self.limit:
            return timedelta(0)
        doublings = min(failures - self.limit, 32)  # 2**32 x anything is past any max
        return min(self.first_lockout * (1 << doublings), self.max_lockout)


ACCOUNT_POLICY = ThrottlePolicy(
    limit=5,
    window=timedelta(minutes=15),
    first_lockout=timedelta(seconds=30),
    max_lockout=timedelta(minutes=15),
)
"""Per account: five wrong passwords, then 30 s, 1 min, 2 min ... up to 15 min."""

ADDRESS_POLICY = ThrottlePolicy(
    limit=20, window=timedelta(minutes=15), first_lockout=timedelta(minutes=1), max_lockout=timedelta(hours=1)
)
"""Per client address: looser, since an office shares one address, but it stops one
host trying one password on many accounts."""


@dataclass(frozen=True)
class Attempts:
    """A counter's state as stored."""

    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


def retry_after(state: Attempts, now: datetime) -> timedelta | None:
    """How long the counter stays locked, or None when it is not."""
    if state.locked_until is not None and state.locked_until > now:
        return state.locked_until - now
    return None


def current(state: Attempts, policy: ThrottlePolicy, now: datetime) -> Attempts:
    """`state` with its failures forgotten if it has been quiet for `policy.window`."""
    if state.last_failure_at is None:
        return Attempts()
    quiet_since = max(state.last_failure_at, state.locked_until or state.last_failure_at)
    if now - quiet_since >= policy.window:
        return Attempts()
    return state


def after_failure(state: Attempts, policy: ThrottlePolicy, now: datetime) -> Attempts:
    """The state after one more failure at `now` (the caller checked it was not locked)."""
    failures = current(state, policy, now).failures + 1
    lock = policy.lockout(failures)
    return Attempts(failures, now, now + lock if lock else None)


def withdraw(state: Attempts, policy: ThrottlePolicy) -> Attempts:
    """The state with one failure taken back (the attempt counted beforehand succeeded)."""
    failures = max(state.failures - 1, 0)
    if failures == 0:
        return Attempts()
    locked_until = state.locked_until if policy.lockout(failures) else None
    return Attempts(failures, state.last_failure_at, locked_until)


def address_key(client_address: str) -> str:
    """The counter key of a client address: IPv4 as is, IPv6 as its /64, else the text."""
    text = client_address.strip()
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text[:64] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
