"""Login throttle counters in the database, so daemons sharing PostgreSQL count together.

`lock` reads a counter for update: on PostgreSQL it inserts the row if missing (racing
inserts agree through `ON CONFLICT DO NOTHING`) and takes a row lock (`FOR UPDATE`)
until the caller's transaction ends, so two daemons cannot both read "4 failures" and
both write 5. SQLite write transactions are serialised already (`BEGIN IMMEDIATE`).
The arithmetic is `domain.throttle`; these functions only load and save its values.
Handle rule: they take a `Session` and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailcrm.domain.throttle import Attempts
from mailcrm.store.models import LoginThrottle, table_of

_THROTTLE = table_of(LoginThrottle)


def _where(counter: str, key: str) -> ColumnElement[bool]:
    return (_THROTTLE.c.counter == counter) & (_THROTTLE.c.key == key)


def peek(session: Session, counter: str, key: str) -> Attempts:
    """A counter's state without locking it (a missing row is a clean counter)."""
    row = session.execute(
        select(_THROTTLE.c.failures, _THROTTLE.c.last_failure_at, _THROTTLE.c.locked_until).where(
            _where(counter, key)
        )
    ).first()
    return Attempts() if row is None else Attempts(row.failures, row.last_failure_at, row.locked_until)


def lock(session: Session, counter: str, key: str) -> Attempts:
    """A counter's state, its row locked until the transaction ends (created if missing)."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(
        module.insert(_THROTTLE)
        .values(counter=counter, key=key, failures=0)
        .on_conflict_do_nothing(index_elements=["counter", "key"])
    )
    row = session.execute(
        select(_THROTTLE.c.failures, _THROTTLE.c.last_failure_at, _THROTTLE.c.locked_until)
        .where(_where(counter, key))
        .with_for_update()
    ).one()
    return Attempts(row.failures, row.last_failure_at, row.locked_until)


def save(session: Session, counter: str, key: str, state: Attempts) -> None:
    """Store a counter's new state (a clean counter is deleted: rows exist only while they count)."""
    if state == Attempts():
        session.execute(delete(_THROTTLE).where(_where(counter, key)))
        return
    session.execute(
        update(_THROTTLE)
        .where(_where(counter, key))
        .values(
            failures=state.failures, last_failure_at=state.last_failure_at, locked_until=state.locked_until
        )
    )


def forget_before(session: Session, before: datetime) -> int:
    """Delete counters whose last failure and lock both ended before `before`; returns how many."""
    result = session.execute(
        delete(_THROTTLE).where(
            (_THROTTLE.c.last_failure_at < before)
            & ((_THROTTLE.c.locked_until.is_(None)) | (_THROTTLE.c.locked_until < before))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
