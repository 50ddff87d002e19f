"""API tokens: stored as a SHA-256 digest and a readable prefix (`domain.tokens`).

Store functions in the handle rule: they take a `Session` and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailcrm.errors import ConflictError
from mailcrm.store.models import ApiToken, User, table_of

_TOKEN = table_of(ApiToken)


def add(
    session: Session,
    *,
    user_id: int,
    prefix: str,
    digest: str,
    scope: str,
    expires_at: datetime | None,
    label: str | None,
) -> ApiToken:
    """Insert a token; a prefix already taken (one chance in 2.8 trillion) is a conflict to retry."""
    if session.exec(select(ApiToken.id).where(ApiToken.prefix == prefix)).first() is not None:
        raise ConflictError(f"token prefix {prefix!r} is taken")
    token = ApiToken(
        user_id=user_id, prefix=prefix, digest=digest, scope=scope, expires_at=expires_at, label=label
    )
    session.add(token)
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"token prefix {prefix!r} is taken") from None
    return token


def by_digest(session: Session, digest: str) -> tuple[ApiToken, User] | None:
    """The token with this digest and its user, or None."""
    query = (
        select(ApiToken, User)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(ApiToken.digest == digest)
    )
    found = session.exec(query).first()
    return None if found is None else (found[0], found[1])


def by_prefix(session: Session, prefix: str) -> tuple[ApiToken, User] | None:
    query = (
        select(ApiToken, User)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(ApiToken.prefix == prefix)
    )
    found = session.exec(query).first()
    return None if found is None else (found[0], found[1])


def of_user(session: Session, user_id: int) -> list[ApiToken]:
    """A user's tokens, newest first (revoked and expired ones included)."""
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(col(ApiToken.id).desc())
    return list(session.exec(query))


def revoke(session: Session, token: ApiToken, at: datetime) -> bool:
    """Revoke a token; returns False when it was revoked already."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = at
    session.add(token)
    session.flush()
    return True


def record_use(session: Session, token_id: int, at: datetime) -> None:
    """Stamp `last_used_at` (the caller decides how often: `domain.tokens.should_record_use`)."""
    session.execute(update(_TOKEN).where(_TOKEN.c.id == token_id).values(last_used_at=at))
