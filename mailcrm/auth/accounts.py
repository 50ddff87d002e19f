"""Managing users and their API tokens; every change lands in the audit log.

These take the caller's `Session` (a write transaction) and the `Actor` making the
change: the CLI passes `Actor(<os user or $MAILCRM_USER>, "cli")`, the API will pass the
logged-in user with `"api"`. Passwords arrive hashed (`passwords.Hasher.new_hash`), so
the slow hash runs before the transaction opens, not while it holds the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlmodel import Session

from mailcrm.domain import tokens as token_format
from mailcrm.domain.access import Role, Scope
from mailcrm.domain.addresses import normalize_address
from mailcrm.errors import ConflictError, NotFoundError, ValidationError
from mailcrm.store import tokens as token_store
from mailcrm.store import users as user_store
from mailcrm.store.models import ApiToken, User
from mailcrm.store.types import utcnow

MAX_TOKEN_DAYS = 3650


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and through which door (`cli` or `api`)."""

    who: str
    via: str


class UserView(BaseModel):
    id: int
    email: str
    role: str
    salesperson: str | None
    disabled: bool


class TokenView(BaseModel):
    """A stored token as shown to people: never its secret."""

    token: str  # mcrm_<prefix>
    user: str
    scope: str
    label: str | None
    state: str  # active, expired, revoked
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `secret` is the whole token, shown this once and never again."""

    secret: str
    view: TokenView


def _view(session: Session, user: User) -> UserView:
    assert user.id is not None
    return UserView(
        id=user.id,
        email=user.email,
        role=user.role,
        salesperson=user_store.salesperson_email(session, user.salesperson_id),
        disabled=user.disabled,
    )


def token_view(token: ApiToken, user: User, now: datetime) -> TokenView:
    return TokenView(
        token=token_format.shown(token.prefix),
        user=user.email,
        scope=token.scope,
        label=token.label,
        state=token_format.token_state(token.revoked_at, token.expires_at, now),
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@dataclass(frozen=True)
class NewUser:
    """A user about to be added, checked: the normalised email and the salesperson it is tied to."""

    email: str
    role: Role
    salesperson_id: int | None
    salesperson: str | None


def check_new_user(session: Session, *, email: str, role: Role, salesperson: str | None) -> NewUser:
    """What `add_user` would add, or the error it would raise (a duplicate email, an
    unknown salesperson, one who has a login already), without writing anything: the CLI
    asks before prompting for a password that would be thrown away.

    A salesperson user is tied to the salesperson `salesperson` (default: the one with
    the user's own email); an admin may be tied to one or to none.
    """
    address = normalize_address(email)
    if user_store.find(session, address) is not None:
        raise ConflictError(
            f"user {address!r} exists already", hint="`mailcrm users passwd` changes a password"
        )
    person_email = normalize_address(salesperson) if salesperson else None
    if role is Role.SALESPERSON and person_email is None:
        person_email = address
    person_id = None
    if person_email is not None:
        person_id = user_store.salesperson_id(session, person_email)
        if person_id is None:
            raise ValidationError(
                f"unknown salesperson {person_email!r}",
                hint="add them under `salespeople:` in mailcrm.yaml, or name one with --salesperson",
            )
        holder = user_store.login_of_salesperson(session, person_id)
        if holder is not None:
            raise ConflictError(f"salesperson {person_email!r} has a login already: {holder!r}")
    return NewUser(address, role, person_id, person_email)


def add_user(
    session: Session, *, email: str, role: Role, salesperson: str | None, password_hash: str, actor: Actor
) -> UserView:
    """Add a user (see `check_new_user` for the rules) and audit it."""
    new = check_new_user(session, email=email, role=role, salesperson=salesperson)
    user = user_store.add(
        session, email=new.email, role=role.value, password_hash=password_hash, salesperson=new.salesperson_id
    )
    user_store.audit(
        session, actor=actor.who, via=actor.via, action="user.add", target=new.email, role=role.value,
        salesperson=new.salesperson,
    )  # fmt: skip
    return _view(session, user)


def change_password(session: Session, *, email: str, password_hash: str, actor: Actor) -> UserView:
    user = user_store.require(session, normalize_address(email))
    user_store.set_password(session, user, password_hash)
    user_store.audit(session, actor=actor.who, via=actor.via, action="user.passwd", target=user.email)
    return _view(session, user)


def set_disabled(session: Session, *, email: str, disabled: bool, actor: Actor) -> tuple[UserView, bool]:
    """Disable (no login, no token works) or enable a user; returns the user and whether it changed."""
    user = user_store.require(session, normalize_address(email))
    changed = user_store.set_disabled(session, user, disabled)
    if changed:
        action = "user.disable" if disabled else "user.enable"
        user_store.audit(session, actor=actor.who, via=actor.via, action=action, target=user.email)
    return _view(session, user), changed


def issue_token(
    session: Session, *, email: str, scope: Scope, days: int | None, label: str | None, actor: Actor
) -> IssuedToken:
    """Make a token for a user, valid for `days` (None: until revoked)."""
    user = user_store.require(session, normalize_address(email))
    assert user.id is not None
    if user.disabled:
        raise ValidationError(
            f"user {user.email!r} is disabled", hint=f"`mailcrm users enable {user.email}` first"
        )
    if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValidationError(f"--expires must be from 1 to {MAX_TOKEN_DAYS} days")
    now = utcnow()
    expires_at = None if days is None else now + timedelta(days=days)
    made = token_format.new_token()  # a prefix already taken (1 in 2.8e12) is a ConflictError
    token = token_store.add(
        session, user_id=user.id, prefix=made.prefix, digest=made.digest, scope=scope.value,
        expires_at=expires_at, label=label,
    )  # fmt: skip
    user_store.audit(
        session, actor=actor.who, via=actor.via, action="token.create", target=user.email,
        token=token_format.shown(made.prefix), scope=scope.value,
        expires_at=None if expires_at is None else expires_at.isoformat(),
    )  # fmt: skip
    return IssuedToken(made.text, token_view(token, user, now))


def tokens_of(session: Session, email: str) -> list[TokenView]:
    user = user_store.require(session, normalize_address(email))
    assert user.id is not None
    now = utcnow()
    return [token_view(token, user, now) for token in token_store.of_user(session, user.id)]


def revoke_token(session: Session, *, named: str, actor: Actor) -> tuple[TokenView, bool]:
    """Revoke the token named by its prefix (`3f9k2q7x`, `mcrm_3f9k2q7x` or the whole token)."""
    prefix = token_format.prefix_of(named)
    if prefix is None:
        # Never echo what was given: it may be a whole token pasted by mistake.
        raise ValidationError("not a token prefix: name a token by the 8 characters after `mcrm_`")
    found = token_store.by_prefix(session, prefix)
    if found is None:
        raise NotFoundError(
            f"no token {token_format.shown(prefix)}", hint="`mailcrm users tokens EMAIL` lists them"
        )
    token, user = found
    now = utcnow()
    changed = token_store.revoke(session, token, now)
    if changed:
        user_store.audit(
            session, actor=actor.who, via=actor.via, action="token.revoke", target=user.email,
            token=token_format.shown(token.prefix),
        )  # fmt: skip
    return token_view(token, user, now), changed
