"""API tokens: their format, the digest kept of them, and how often their use is recorded.

A token reads `mcrm_<prefix>_<secret>`: the `mcrm_` tag lets secret scanners and people
recognise it, the 8-character prefix is stored in clear so a token can be listed and
revoked by it (`mcrm_3f9k2q7x`), and the 40-character secret (about 238 bits from
`secrets`) is never stored. Only the SHA-256 of the whole token is kept: the secret is
random and long, so a slow password hash would add nothing but cost on every request.
Letters and digits only, so a double-click in a terminal selects the whole token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

TAG = "mcrm"
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_FORMAT = re.compile(rf"{TAG}_([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})")
_SHOWN = re.compile(rf"(?:{TAG}_)?([a-z0-9]{{{PREFIX_LENGTH}}})(?:_.*)?")

USE_RECORDED_EVERY = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token: a busy webhook must not turn
every request into a write."""


@dataclass(frozen=True)
class NewToken:
    """A token as made: `text` is shown once, `prefix` and `digest` are stored."""

    text: str
    prefix: str
    digest: str


def new_token() -> NewToken:
    """A fresh random token."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    text = compose(prefix, secret)
    return NewToken(text, prefix, token_digest(text))


def compose(prefix: str, secret: str) -> str:
    return f"{TAG}_{prefix}_{secret}"


def is_well_formed(text: str) -> bool:
    """Whether `text` has the shape of a token (checked before any lookup)."""
    return _FORMAT.fullmatch(text) is not None


def token_digest(text: str) -> str:
    """What is stored of a token: the hex SHA-256 of its full text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shown(prefix: str) -> str:
    """How a stored token is named to people: `mcrm_<prefix>`."""
    return f"{TAG}_{prefix}"


def prefix_of(text: str) -> str | None:
    """The prefix named by `text`: a bare prefix, `mcrm_<prefix>`, or a whole token."""
    match = _SHOWN.fullmatch(text.strip())
    return match.group(1) if match else None


def should_record_use(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether this use is worth a write (see `USE_RECORDED_EVERY`)."""
    return last_used_at is None or now - last_used_at >= USE_RECORDED_EVERY


def token_state(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    """`revoked`, `expired` or `active`, in that order of precedence."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
