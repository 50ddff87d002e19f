"""Failures caused by the sender's own setup, kept once per (sending domain, cause, receiving domain).

A DKIM record that is missing makes every email to Gmail fail the same way; the
salesperson must hear it once, with what to fix, not once per customer. `record` adds
a row on the first sighting and counts the later ones (first and last seen, count);
it tells its caller whether this was the first, which is when the caller logs the one
WARNING line (`domain.delivery_reports.sender_issue_line`). `mailcrm mailboxes status`
lists them (`all_issues`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from mailcrm.store.models import SenderIssue, table_of

_ISSUE = table_of(SenderIssue)


class SenderIssueView(BaseModel):
    """One sender-side issue as `mailboxes status` shows it."""

    sender_domain: str
    cause: str
    receiving_domain: str
    salesperson: str | None
    status: str | None
    detail: str | None
    count: int
    first_seen: datetime
    last_seen: datetime


def record(
    session: Session,
    *,
    sender_domain: str,
    cause: str,
    receiving_domain: str,
    salesperson: str | None,
    status: str | None,
    detail: str | None,
    at: datetime,
) -> bool:
    """Count one sighting; True on the first (one statement, safe with several daemons)."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(_ISSUE).values(
        sender_domain=sender_domain,
        cause=cause,
        receiving_domain=receiving_domain,
        salesperson=salesperson,
        status=status,
        detail=detail,
        count=1,
        first_seen=at,
        last_seen=at,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["sender_domain", "cause", "receiving_domain"],
        set_={
            "count": _ISSUE.c.count + 1,
            "last_seen": at,
            "status": statement.excluded.status,
            "detail": statement.excluded.detail,
            "salesperson": statement.excluded.salesperson,
        },
    ).returning(_ISSUE.c.count)
    return int(session.execute(statement).scalar_one()) == 1


def all_issues(session: Session) -> list[SenderIssueView]:
    """Every issue, most recent first."""
    query = select(_ISSUE).order_by(_ISSUE.c.last_seen.desc(), _ISSUE.c.id)
    return [SenderIssueView.model_validate(row, from_attributes=True) for row in session.execute(query)]
