"""Users who log in (web dashboard, API), and the audit log of changes to them.

Store functions in the handle rule: they take a `Session` and never commit. Emails are
looked up normalised (`domain.addresses.normalize_address`), so `Alice@Acme.example`
and `alice@acme.example` are one account.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailcrm.errors import ConflictError, NotFoundError
from mailcrm.store.models import ApiToken, AuditEntry, Salesperson, User
from mailcrm.store.types import utcnow


class UserRow(BaseModel):
    """A user as listed: never the password hash."""

    id: int
    email: str
    role: str
    salesperson: str | None
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    active_tokens: int


def find(session: Session, email: str) -> User | None:
    """The user with this (normalised) email, or None."""
    return session.exec(select(User).where(User.email == email)).first()


def require(session: Session, email: str) -> User:
    """The user with this (normalised) email, or an error naming it."""
    user = find(session, email)
    if user is None:
        raise NotFoundError(f"no user {email!r}", hint="`mailcrm users list` shows them")
    return user


def by_id(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def salesperson_id(session: Session, email: str) -> int | None:
    """The id of the salesperson row with this email, or None."""
    return session.exec(select(Salesperson.id).where(Salesperson.email == email)).first()


def salesperson_email(session: Session, person_id: int | None) -> str | None:
    if person_id is None:
        return None
    person = session.get(Salesperson, person_id)
    return None if person is None else person.email


def login_of_salesperson(session: Session, person_id: int) -> str | None:
    """The email of the user tied to this salesperson, or None."""
    return session.exec(select(User.email).where(User.salesperson_id == person_id)).first()


def add(session: Session, *, email: str, role: str, password_hash: str, salesperson: int | None) -> User:
    """Insert a user; a duplicate email, or a salesperson who has a login already, is a conflict."""
    if find(session, email) is not None:
        raise ConflictError(
            f"user {email!r} exists already", hint="`mailcrm users passwd` changes a password"
        )
    user = User(email=email, role=role, salesperson_id=salesperson, password_hash=password_hash)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        # Another process added the same email (or tied the salesperson) after the caller checked.
        raise ConflictError(f"user {email!r} (or its salesperson's login) exists already") from None
    return user


def listing(session: Session, now: datetime) -> list[UserRow]:
    """Every user, by email, with their salesperson and how many tokens still work."""
    active = (
        select(ApiToken.user_id, func.count().label("n"))
        .where(col(ApiToken.revoked_at).is_(None))
        .where((col(ApiToken.expires_at).is_(None)) | (col(ApiToken.expires_at) > now))
        .group_by(col(ApiToken.user_id))
        .subquery()
    )
    query = (
        select(User, Salesperson.email, active.c.n)
        .join(Salesperson, col(Salesperson.id) == col(User.salesperson_id), isouter=True)
        .join(active, active.c.user_id == col(User.id), isouter=True)
        .order_by(col(User.email))
    )
    rows: list[UserRow] = []
    for user, person, tokens in session.exec(query):
        assert user.id is not None
        rows.append(
            UserRow(
                id=user.id,
                email=user.email,
                role=user.role,
                salesperson=person,
                disabled=user.disabled,
                created_at=user.created_at,
                last_login_at=user.last_login_at,
                active_tokens=tokens or 0,
            )
        )
    return rows


def set_password(session: Session, user: User, password_hash: str) -> None:
    now = utcnow()
    user.password_hash = password_hash
    user.password_changed_at = now
    user.updated_at = now
    session.add(user)
    session.flush()


def set_disabled(session: Session, user: User, disabled: bool) -> bool:
    """Disable or enable; returns whether anything changed."""
    if user.disabled == disabled:
        return False
    user.disabled = disabled
    user.updated_at = utcnow()
    session.add(user)
    session.flush()
    return True


def record_login(session: Session, user_id: int, at: datetime, new_hash: str | None = None) -> None:
    """A successful login; `new_hash` replaces the stored one (hashed again with today's parameters)."""
    user = session.get(User, user_id)
    if user is None:
        return
    user.last_login_at = at
    if new_hash is not None:
        user.password_hash = new_hash
    session.add(user)
    session.flush()


def audit(session: Session, *, actor: str, via: str, action: str, target: str, **detail: Any) -> None:
    """Append one entry to the audit log, in the caller's transaction."""
    session.add(AuditEntry(actor=actor, via=via, action=action, target=target, detail=detail))
    session.flush()


def audit_entries(session: Session, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The newest audit entries (about `target` only, when given)."""
    query = select(AuditEntry).order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc()).limit(limit)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    return list(session.exec(query))
