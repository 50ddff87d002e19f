"""Logging in and API tokens against a real database (SQLite and PostgreSQL): what a
caller of `mailcrm.auth` sees, with the throttle state shared through the database."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from mailcrm.auth import accounts
from mailcrm.auth.login import Authenticator, Refusal, Refused
from mailcrm.auth.passwords import Hasher
from mailcrm.domain.access import Principal, Role, Scope
from mailcrm.domain.throttle import ThrottlePolicy
from mailcrm.errors import AuthenticationError, PermissionDeniedError
from mailcrm.store import users as user_store
from mailcrm.store.db import Database
from mailcrm.store.models import Salesperson

PASSWORD = "correct horse battery"
CLI = accounts.Actor("root", "cli")
# Cheap parameters: tests hash many times. The production defaults are argon2-cffi's.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
POLICY = ThrottlePolicy(
    limit=3,
    window=timedelta(minutes=10),
    first_lockout=timedelta(seconds=30),
    max_lockout=timedelta(minutes=5),
)
LOOSE = ThrottlePolicy(
    limit=1000,
    window=timedelta(minutes=10),
    first_lockout=timedelta(seconds=1),
    max_lockout=timedelta(seconds=1),
)


class Clock:
    def __init__(self) -> None:
        # Real time to start: tokens are made with it (their expiry counts from it).
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people(db: Database) -> Database:
    """Alice (salesperson, with a login), and an admin."""
    hasher = Hasher(FAST)
    with db.write() as session:
        session.add(Salesperson(email="alice@acme.example", name="Alice"))
    with db.write() as session:
        accounts.add_user(
            session, email="Alice@ACME.example", role=Role.SALESPERSON, salesperson=None,
            password_hash=hasher.new_hash(PASSWORD, "alice@acme.example"), actor=CLI,
        )  # fmt: skip
        accounts.add_user(
            session, email="boss@acme.example", role=Role.ADMIN, salesperson=None,
            password_hash=hasher.new_hash(PASSWORD, "boss@acme.example"), actor=CLI,
        )  # fmt: skip
    return db


def _auth(db: Database, clock: Clock, address_policy: ThrottlePolicy = LOOSE) -> Authenticator:
    return Authenticator(
        db, hasher=Hasher(FAST), account_policy=POLICY, address_policy=address_policy, clock=clock
    )


def test_the_right_password_logs_in_whatever_the_case_of_the_email(people: Database, clock: Clock) -> None:
    found = _auth(people, clock).authenticate("ALICE@acme.EXAMPLE", PASSWORD, "203.0.113.7")
    assert isinstance(found, Principal)
    assert (found.email, found.role, found.scope) == ("alice@acme.example", Role.SALESPERSON, None)
    assert found.owner_filter is not None
    with people.read() as session:
        user = user_store.require(session, "alice@acme.example")
        assert user.last_login_at == clock.now
        assert found.owner_filter == user.salesperson_id


def test_a_wrong_password_and_an_unknown_email_are_the_same_refusal(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    assert auth.authenticate("alice@acme.example", "wrong password!", "203.0.113.7") == Refused(
        Refusal.INVALID
    )
    assert auth.authenticate("nobody@acme.example", PASSWORD, "203.0.113.7") == Refused(Refusal.INVALID)
    assert auth.authenticate("not an address", PASSWORD, "203.0.113.7") == Refused(Refusal.INVALID)
    assert auth.authenticate("alice@acme.example", "x" * 5000, "203.0.113.7") == Refused(Refusal.INVALID)


def test_an_unknown_email_takes_as_long_as_a_wrong_password(people: Database, clock: Clock) -> None:
    """The dummy hash: without it an unknown email is refused in a millisecond while a
    known one costs a full argon2 verification, which tells which emails have accounts."""
    slow = PasswordHasher(time_cost=4, memory_cost=32 * 1024, parallelism=1)
    with people.write() as session:
        user = user_store.require(session, "boss@acme.example")
        user_store.set_password(session, user, slow.hash(PASSWORD))
    auth = Authenticator(people, hasher=Hasher(slow), account_policy=LOOSE, address_policy=LOOSE, clock=clock)

    def timed(email: str) -> float:
        started = time.perf_counter()
        assert auth.authenticate(email, "wrong password!", "192.0.2.1") == Refused(Refusal.INVALID)
        return time.perf_counter() - started

    known = statistics.median(timed("boss@acme.example") for _ in range(3))
    unknown = statistics.median(timed("nobody@acme.example") for _ in range(3))
    assert unknown > 0.5 * known, (unknown, known)


def test_failures_lock_the_account_then_the_lock_runs_out(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    for _ in range(3):
        refused = auth.authenticate("alice@acme.example", "wrong password!", "203.0.113.7")
        assert refused == Refused(Refusal.INVALID)
    # Locked: even the right password is refused, from any address, saying for how long.
    refused = auth.authenticate("alice@acme.example", PASSWORD, "198.51.100.9")
    assert refused == Refused(Refusal.THROTTLED, timedelta(seconds=30))
    clock.advance(seconds=29)
    assert auth.authenticate("alice@acme.example", PASSWORD, "198.51.100.9") == Refused(
        Refusal.THROTTLED, timedelta(seconds=1)
    )
    clock.advance(seconds=1)
    assert isinstance(auth.authenticate("alice@acme.example", PASSWORD, "198.51.100.9"), Principal)
    # The success cleared the account's count: three more failures are needed to lock it.
    for _ in range(2):
        auth.authenticate("alice@acme.example", "wrong password!", "203.0.113.7")
    assert isinstance(auth.authenticate("alice@acme.example", PASSWORD, "203.0.113.7"), Principal)


def test_a_lock_on_an_unknown_email_looks_like_one_on_a_real_account(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    for email in ("alice@acme.example", "ghost@acme.example"):
        for _ in range(3):
            auth.authenticate(email, "wrong password!", "203.0.113.7")
        assert auth.authenticate(email, "wrong password!", "203.0.113.7") == Refused(
            Refusal.THROTTLED, timedelta(seconds=30)
        )


def test_one_address_trying_many_accounts_is_locked_out(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock, address_policy=POLICY)
    for email in ("a@x.example", "b@x.example", "c@x.example"):
        assert auth.authenticate(email, PASSWORD, "2001:db8:1:2::10") == Refused(Refusal.INVALID)
    # The whole /64 is one counter; another network is not affected.
    assert auth.authenticate("alice@acme.example", PASSWORD, "2001:db8:1:2::99") == Refused(
        Refusal.THROTTLED, timedelta(seconds=30)
    )
    assert isinstance(auth.authenticate("alice@acme.example", PASSWORD, "2001:db8:9::1"), Principal)


def test_two_daemons_on_one_database_count_failures_together(people: Database, clock: Clock) -> None:
    other = Database(people.url)
    try:
        first, second = _auth(people, clock), _auth(other, clock)
        first.authenticate("alice@acme.example", "wrong password!", "203.0.113.7")
        second.authenticate("alice@acme.example", "wrong password!", "203.0.113.8")
        first.authenticate("alice@acme.example", "wrong password!", "203.0.113.9")
        assert second.authenticate("alice@acme.example", PASSWORD, "203.0.113.10") == Refused(
            Refusal.THROTTLED, timedelta(seconds=30)
        )
    finally:
        other.dispose()


def test_a_disabled_user_is_told_only_after_the_right_password(people: Database, clock: Clock) -> None:
    with people.write() as session:
        accounts.set_disabled(session, email="alice@acme.example", disabled=True, actor=CLI)
    auth = _auth(people, clock)
    assert auth.authenticate("alice@acme.example", "wrong password!", "203.0.113.7") == Refused(
        Refusal.INVALID
    )
    assert auth.authenticate("alice@acme.example", PASSWORD, "203.0.113.7") == Refused(Refusal.DISABLED)


def test_a_hash_made_with_old_parameters_is_replaced_at_login(people: Database, clock: Clock) -> None:
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    auth = Authenticator(people, hasher=Hasher(stronger), account_policy=POLICY, clock=clock)
    with people.read() as session:
        before = user_store.require(session, "alice@acme.example").password_hash
    assert "t=1" in before
    assert isinstance(auth.authenticate("alice@acme.example", PASSWORD, "203.0.113.7"), Principal)
    with people.read() as session:
        after = user_store.require(session, "alice@acme.example").password_hash
    assert after != before and "t=2" in after and "m=16" in after
    assert isinstance(auth.authenticate("alice@acme.example", PASSWORD, "203.0.113.7"), Principal)


def _token(db: Database, email: str, scope: Scope, days: int | None = 30) -> str:
    with db.write() as session:
        return accounts.issue_token(
            session, email=email, scope=scope, days=days, label=None, actor=CLI
        ).secret


def test_tokens_act_for_their_user_within_their_scope(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    reader, writer = (
        _token(people, "alice@acme.example", Scope.READ),
        _token(people, "boss@acme.example", Scope.WRITE),
    )
    who = auth.check_token(reader, Scope.READ)
    assert (who.email, who.scope, who.is_admin) == ("alice@acme.example", Scope.READ, False)
    with pytest.raises(PermissionDeniedError, match="this token may only read"):
        auth.check_token(reader, Scope.WRITE)
    assert auth.check_token(writer, Scope.READ).is_admin
    assert auth.check_token(writer, Scope.WRITE).scope is Scope.WRITE


def test_refused_tokens_all_look_alike(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    good = _token(people, "alice@acme.example", Scope.WRITE, days=1)
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    reasons = {}
    for name, text in {"malformed": good[:-1], "unknown": tampered}.items():
        with pytest.raises(AuthenticationError, match=r"^invalid or expired API token$") as caught:
            auth.check_token(text, Scope.READ)
        reasons[name] = caught.value.reason
    clock.advance(days=1, minutes=1)
    with pytest.raises(AuthenticationError, match=r"^invalid or expired API token$") as caught:
        auth.check_token(good, Scope.READ)
    reasons["expired"] = caught.value.reason
    assert reasons == {"malformed": "malformed", "unknown": "unknown", "expired": "expired"}


def test_revoking_or_disabling_stops_a_token_and_enabling_brings_it_back(
    people: Database, clock: Clock
) -> None:
    auth = _auth(people, clock)
    token = _token(people, "alice@acme.example", Scope.READ)
    with people.write() as session:
        accounts.set_disabled(session, email="alice@acme.example", disabled=True, actor=CLI)
    with pytest.raises(AuthenticationError) as caught:
        auth.check_token(token, Scope.READ)
    assert caught.value.reason == "disabled"
    with people.write() as session:
        accounts.set_disabled(session, email="alice@acme.example", disabled=False, actor=CLI)
    assert auth.check_token(token, Scope.READ).email == "alice@acme.example"
    with people.write() as session:
        view, changed = accounts.revoke_token(session, named=token, actor=CLI)
        assert changed and view.state == "revoked"
        assert accounts.revoke_token(session, named=view.token, actor=CLI)[1] is False
    with pytest.raises(AuthenticationError) as caught:
        auth.check_token(token, Scope.READ)
    assert caught.value.reason == "revoked"


def test_token_use_is_stamped_at_most_once_a_minute(people: Database, clock: Clock) -> None:
    auth = _auth(people, clock)
    token = _token(people, "alice@acme.example", Scope.READ)
    first = clock.now
    auth.check_token(token, Scope.READ)
    clock.advance(seconds=30)
    auth.check_token(token, Scope.READ)
    with people.read() as session:
        (view,) = accounts.tokens_of(session, "alice@acme.example")
    assert view.last_used_at == first
    clock.advance(seconds=30)
    auth.check_token(token, Scope.READ)
    with people.read() as session:
        (view,) = accounts.tokens_of(session, "alice@acme.example")
    assert view.last_used_at == clock.now


def test_changes_are_audited_with_who_and_how(people: Database) -> None:
    _token(people, "alice@acme.example", Scope.WRITE)
    with people.write() as session:
        accounts.change_password(
            session,
            email="alice@acme.example",
            password_hash=Hasher(FAST).new_hash("another long secret", "a@b.c"),
            actor=accounts.Actor("boss@acme.example", "api"),
        )
    with people.read() as session:
        entries = user_store.audit_entries(session, target="alice@acme.example")
    assert [(e.action, e.actor, e.via) for e in entries] == [
        ("user.passwd", "boss@acme.example", "api"),
        ("token.create", "root", "cli"),
        ("user.add", "root", "cli"),
    ]
    assert entries[1].detail["scope"] == "write" and entries[1].detail["token"].startswith("mcrm_")
    assert entries[2].detail == {"role": "salesperson", "salesperson": "alice@acme.example"}


def test_quiet_counters_are_deleted(people: Database, clock: Clock) -> None:
    from mailcrm.domain.throttle import Counter
    from mailcrm.store import throttle as throttle_store

    auth = _auth(people, clock)
    auth.authenticate("ghost@acme.example", "wrong password!", "203.0.113.7")
    with people.read() as session:
        assert throttle_store.peek(session, Counter.ACCOUNT, "ghost@acme.example").failures == 1
    clock.advance(minutes=11)
    auth.authenticate("other@acme.example", "wrong password!", "203.0.113.8")
    with people.read() as session:
        assert throttle_store.peek(session, Counter.ACCOUNT, "ghost@acme.example").failures == 0
        assert throttle_store.peek(session, Counter.ADDRESS, "203.0.113.7").failures == 0
        assert throttle_store.peek(session, Counter.ACCOUNT, "other@acme.example").failures == 1


def test_parallel_guesses_each_reserve_a_failure_before_any_hash_runs(people: Database, clock: Clock) -> None:
    """Twelve guesses at once against a limit of three: three passwords are checked, the
    other nine are refused as throttled without a hash, on every store; the counter holds
    exactly three failures (no update lost between concurrent transactions)."""
    from concurrent.futures import ThreadPoolExecutor

    from mailcrm.domain.throttle import Counter
    from mailcrm.store import throttle as throttle_store

    auth = _auth(people, clock)
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(
                lambda n: auth.authenticate("alice@acme.example", f"wrong password {n}", f"198.51.100.{n}"),
                range(12),
            )
        )
    assert (
        sorted(o.reason for o in outcomes if isinstance(o, Refused))
        == [Refusal.INVALID] * 3 + [Refusal.THROTTLED] * 9
    )
    with people.read() as session:
        assert throttle_store.peek(session, Counter.ACCOUNT, "alice@acme.example").failures == 3


def test_the_user_list_counts_only_tokens_that_still_work(people: Database) -> None:
    _token(people, "alice@acme.example", Scope.READ)
    revoked = _token(people, "alice@acme.example", Scope.READ)
    _token(people, "boss@acme.example", Scope.WRITE, days=None)
    with people.write() as session:
        accounts.revoke_token(session, named=revoked, actor=CLI)
    with people.read() as session:
        now = datetime.now(UTC)  # tokens are made with the real time
        rows = user_store.listing(session, now)
        later = user_store.listing(session, now + timedelta(days=31))
    assert [(r.email, r.role, r.salesperson, r.active_tokens) for r in rows] == [
        ("alice@acme.example", "salesperson", "alice@acme.example", 1),
        ("boss@acme.example", "admin", None, 1),
    ]
    assert [r.active_tokens for r in later] == [0, 1]  # 30 days ran out; the boss's never expires
