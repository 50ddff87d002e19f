"""Password hashing with argon2id (argon2-cffi), behind the policy of `domain.passwords`.

The parameters are argon2-cffi's defaults, RFC 9106's second recommended profile
(t=3, 64 MiB, p=4). When they change in a later version, a stored hash made with the
old ones still verifies, and `Verdict.rehash` carries the new hash to store on that
login. argon2 compares in constant time; for an email that has no account,
`dummy_verify` spends the same time on a hash made at start, so the time a refusal
takes does not tell which emails have accounts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailcrm.domain.passwords import normalize_password, password_problem
from mailcrm.errors import ValidationError


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rehash: str | None = None  # a new hash to store: the parameters changed since this one


class Hasher:
    """Hashes and verifies passwords; one per process (it keeps the dummy hash)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def new_hash(self, password: str, email: str) -> str:
        """The hash of a new password for `email`, or a `ValidationError` saying what is wrong."""
        problem = password_problem(password, email)
        if problem is not None:
            raise ValidationError(f"password refused: {problem}")
        return self._hasher.hash(normalize_password(password))

    def verify(self, stored: str, password: str) -> Verdict:
        """Whether `password` matches `stored` (a broken stored hash never matches)."""
        try:
            self._hasher.verify(stored, normalize_password(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verdict(False)
        if self._hasher.check_needs_rehash(stored):
            return Verdict(True, self._hasher.hash(normalize_password(password)))
        return Verdict(True)

    def prepare(self) -> None:
        """Make the dummy hash now, so even the first unknown email costs one verification."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def dummy_verify(self, password: str) -> None:
        """Spend the time a real verification takes, for a login whose account is unknown."""
        self.prepare()
        assert self._dummy is not None
        self.verify(self._dummy, password)
