"""Logging in: passwords (throttled per account and per client address) and API tokens.

`authenticate` runs two short transactions around the slow hash, never one long one:

1. lock both throttle counters (`store.throttle.lock`); if either is locked, refuse
   with the time left and check nothing; else count this attempt as a failure on both
   (so parallel guesses each reserve a count before any hash runs) and read the user;
2. verify the password outside any transaction (argon2; for an unknown email the dummy
   hash, so both take the same time);
3. if it matched: clear the account's counter, withdraw the address's reserved failure,
   and record the login (storing a fresh hash if argon2's parameters changed).

Refusals say only `invalid` (unknown email and wrong password alike), `throttled`
(with how long) or `disabled` (only to someone who gave the right password). The
counters key the email as typed (normalised), whether or not it has an account, so a
lock does not reveal that either.

`check_token` reads the token by the SHA-256 of its text; revoked, expired, unknown
and malformed tokens, and tokens of disabled users, are all one `AuthenticationError`
to the caller (its `reason` is for the server's log), and a scope too narrow is a
`PermissionDeniedError`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlmodel import Session

from mailcrm.auth.passwords import Hasher
from mailcrm.domain import throttle
from mailcrm.domain.access import Principal, Role, Scope, allows
from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.passwords import MAX_LENGTH
from mailcrm.domain.throttle import ACCOUNT_POLICY, ADDRESS_POLICY, Attempts, Counter, ThrottlePolicy
from mailcrm.domain.tokens import is_well_formed, should_record_use, token_digest, token_state
from mailcrm.errors import AuthenticationError, PermissionDeniedError, ValidationError
from mailcrm.store import throttle as throttle_store
from mailcrm.store import tokens as token_store
from mailcrm.store import users as user_store
from mailcrm.store.db import Database
from mailcrm.store.models import User
from mailcrm.store.types import utcnow

log = logging.getLogger(__name__)


class Refusal(StrEnum):
    INVALID = "invalid"
    THROTTLED = "throttled"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    retry_after: timedelta | None = None  # for THROTTLED: when to try again


@dataclass(frozen=True)
class _Account:
    user_id: int
    password_hash: str
    disabled: bool


def principal(user: User, scope: Scope | None = None) -> Principal:
    assert user.id is not None
    return Principal(user.id, user.email, Role(user.role), user.salesperson_id, scope)


class Authenticator:
    """The login and token checks the web layer calls; one per process (it keeps the dummy hash)."""

    def __init__(
        self,
        db: Database,
        *,
        hasher: Hasher | None = None,
        account_policy: ThrottlePolicy = ACCOUNT_POLICY,
        address_policy: ThrottlePolicy = ADDRESS_POLICY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.hasher = hasher or Hasher()
        self.hasher.prepare()
        self.policies = {Counter.ACCOUNT: account_policy, Counter.ADDRESS: address_policy}
        self.clock = clock

    def authenticate(self, email: str, password: str, client_address: str) -> Principal | Refused:
        """The user `email` names if `password` is theirs, else why not (see the module docstring)."""
        try:
            account_key = normalize_address(email)
            known = True
        except ValidationError:
            account_key, known = email.strip().lower()[:254] or "-", False
        keys = {Counter.ACCOUNT: account_key, Counter.ADDRESS: throttle.address_key(client_address)}
        now = self.clock()
        with self.db.write() as session:
            states = {counter: throttle_store.lock(session, counter, key) for counter, key in keys.items()}
            waits = [wait for state in states.values() if (wait := throttle.retry_after(state, now))]
            if waits:
                log.info("login refused: throttled", extra={"action": "login_throttled"})
                return Refused(Refusal.THROTTLED, max(waits))
            for counter, state in states.items():
                throttle_store.save(
                    session,
                    counter,
                    keys[counter],
                    throttle.after_failure(state, self.policies[counter], now),
                )
            self._forget_quiet(session, now)
            user = user_store.find(session, account_key) if known else None
            account = None if user is None else _Account(user.id or 0, user.password_hash, user.disabled)

        if len(password) > MAX_LENGTH:
            return Refused(Refusal.INVALID)  # no account has such a password; hash nothing
        if account is None:
            self.hasher.dummy_verify(password)
            return Refused(Refusal.INVALID)
        verdict = self.hasher.verify(account.password_hash, password)
        if not verdict.ok:
            return Refused(Refusal.INVALID)

        with self.db.write() as session:
            throttle_store.lock(session, Counter.ACCOUNT, account_key)
            throttle_store.save(session, Counter.ACCOUNT, account_key, Attempts())
            address = throttle_store.lock(session, Counter.ADDRESS, keys[Counter.ADDRESS])
            throttle_store.save(
                session,
                Counter.ADDRESS,
                keys[Counter.ADDRESS],
                throttle.withdraw(address, self.policies[Counter.ADDRESS]),
            )
            if account.disabled:
                return Refused(Refusal.DISABLED)
            user_store.record_login(session, account.user_id, now, verdict.rehash)
            found = user_store.by_id(session, account.user_id)
            if found is None:  # deleted while the hash ran
                return Refused(Refusal.INVALID)
            return principal(found)

    def _forget_quiet(self, session: Session, now: datetime) -> None:
        """Drop counters quiet for longer than any window: they count nothing any more."""
        window = max(policy.window for policy in self.policies.values())
        throttle_store.forget_before(session, now - window)

    def check_token(self, token: str, needed: Scope) -> Principal:
        """The user an API token acts for, if it is valid and its scope covers `needed`."""
        if not is_well_formed(token):
            raise _refused("malformed")
        digest = token_digest(token)
        now = self.clock()
        with self.db.read() as session:
            found = token_store.by_digest(session, digest)
        if found is None or not hmac.compare_digest(found[0].digest, digest):
            raise _refused("unknown")
        record, user = found
        state = token_state(record.revoked_at, record.expires_at, now)
        if state != "active":
            raise _refused(state)
        if user.disabled:
            raise _refused("disabled")
        scope = Scope(record.scope)
        if not allows(scope, needed):
            raise PermissionDeniedError(
                f"this token may only {scope.value}; {needed.value} needs a token with that scope",
                hint=f"`mailcrm users token EMAIL --scope {needed.value}` makes one",
            )
        if should_record_use(record.last_used_at, now):
            assert record.id is not None
            with self.db.write() as session:
                token_store.record_use(session, record.id, now)
        return principal(user, scope)


def _refused(reason: str) -> AuthenticationError:
    return AuthenticationError("invalid or expired API token", reason=reason)
