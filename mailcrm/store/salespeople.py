"""Salespeople rows mirror the team in the config file, so customers can reference their owner.

The store does not read the configuration: the caller passes the team as `TeamMember`s
(`mailcrm.wiring.team` cuts them from the settings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, select

from mailcrm.errors import ValidationError
from mailcrm.store.models import Salesperson


@dataclass(frozen=True, slots=True)
class TeamMember:
    """A salesperson as their row holds them; ``email`` is normalized (lower case)."""

    email: str
    name: str
    language: str | None = None
    timezone: str | None = None


def sync_team(session: Session, team: Iterable[TeamMember]) -> dict[str, int]:
    """Insert or update one row per team member; returns email → id (every known salesperson)."""
    existing = {row.email: row for row in session.exec(select(Salesperson))}
    for person in team:
        row = existing.get(person.email)
        if row is None:
            row = Salesperson(email=person.email, name=person.name)
            session.add(row)
            existing[person.email] = row
        row.name = person.name
        row.language = person.language
        row.timezone = person.timezone
    session.flush()
    return {email: row.id for email, row in existing.items() if row.id is not None}


def owner_ids(session: Session) -> dict[str, int]:
    """Every known salesperson, email → id."""
    return {row.email: row.id for row in session.exec(select(Salesperson)) if row.id is not None}


def require_owner(owners: dict[str, int], email: str) -> int:
    """The id of salesperson `email`, or an error saying how to add them."""
    try:
        return owners[email]
    except KeyError:
        raise ValidationError(
            f"owner: unknown salesperson {email!r}",
            hint="add them under `salespeople:` in mailcrm.yaml",
        ) from None
