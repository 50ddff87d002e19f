"""Signing keys kept in the database: made once at random, shared by every daemon on it.

Unsubscribe tokens (`domain.unsubscribe`) are signed with such a key. None is
configured today, so the first daemon that needs one makes it (`secrets.token_bytes`)
and stores it; every other daemon on the same database, and every later run, reads the
same one. A key from the configuration (the web endpoint's `web.secret_env` /
`web.secret_file`) can take its place later: callers take the key as plain bytes, and
`signing_key` is the one place that decides where it comes from.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailcrm.errors import DatabaseError
from mailcrm.store.models import SigningKey, table_of
from mailcrm.store.types import utcnow

_KEY = table_of(SigningKey)

UNSUBSCRIBE_KEY = "unsubscribe"
_BYTES = 32


def signing_key(session: Session, name: str = UNSUBSCRIBE_KEY, configured: bytes | None = None) -> bytes:
    """The key called `name`: `configured` when given, else the stored one (made on first use).

    Two daemons making it at once agree: the insert does nothing when the other's
    landed first, and both read the one stored.
    """
    if configured:
        return configured
    found = session.execute(select(_KEY.c.secret).where(_KEY.c.name == name)).scalar_one_or_none()
    if found is None:
        dialect = session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        values = {"name": name, "secret": secrets.token_hex(_BYTES), "created_at": utcnow()}
        session.execute(module.insert(_KEY).values(**values).on_conflict_do_nothing(index_elements=["name"]))
        found = session.execute(select(_KEY.c.secret).where(_KEY.c.name == name)).scalar_one()
    return _decoded(name, found)


def _decoded(name: str, stored: str) -> bytes:
    try:
        key = bytes.fromhex(stored)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise DatabaseError(
            f"signing_key {name!r}: the stored key is not a hex key of at least 16 bytes",
            hint=f"delete that row (DELETE FROM signing_key WHERE name = '{name}') and a new key is made; "
            "unsubscribe links already sent then stop working",
        )
    return key
