"""Planning: rules + the database → outbox rows (or a forecast that writes nothing).

Each pass covers due times from `now - catch_up` to `now + lookahead`. The store finds
candidates with set-based SQL, streamed in batches; the pure core computes each
occurrence's local send time; the outbox's unique key (rule, customer, occurrence)
makes every pass, on any number of machines, idempotent.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice

from sqlmodel import Session

from mailcrm.domain.occurrences import PlanContext, plan_rule
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.rules import RuleSet
from mailcrm.settings import Settings
from mailcrm.store import outbox
from mailcrm.store.candidates import candidates, scan
from mailcrm.store.db import Database
from mailcrm.store.outbox import planned_occurrences

log = logging.getLogger(__name__)

_BATCH = 5000
"""Candidates planned, and outbox rows written, per step: memory stays flat however many
customers there are, and no write transaction holds SQLite's lock for long."""


@dataclass
class PlanReport:
    """What a planning pass found and wrote."""

    start: datetime
    end: datetime
    planned: int = 0
    inserted: int = 0
    skipped_late: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Batch:
    rule: str
    emails: list[PlannedEmail]
    owners: dict[int, str | None]  # customer id → owner's email (the Message-ID's domain)


def _context(settings: Settings, start: datetime, end: datetime, now: datetime) -> PlanContext:
    return PlanContext(
        start=start,
        end=end,
        now=now,
        grace=timedelta(hours=settings.planning.grace_hours),
        default_timezone=settings.defaults.timezone,
        leap_day=settings.planning.leap_day,
    )


def _batches(reading: Session, rules: RuleSet, context: PlanContext) -> Iterator[_Batch]:
    """The planned emails of every enabled rule, `_BATCH` candidates at a time (`reading`:
    the candidate scan's transaction, `store.candidates.scan`)."""
    for rule in rules.rules:
        if not rule.enabled:
            continue
        found = candidates(reading, rule, context.start, context.end)
        while chunk := list(islice(found, _BATCH)):
            emails = plan_rule(rule, chunk, context)
            if emails:
                owners = {candidate.customer_id: candidate.owner for candidate in chunk}
                yield _Batch(
                    rule.name, emails, {email.customer_id: owners[email.customer_id] for email in emails}
                )


def compute(db: Database, settings: Settings, rules: RuleSet, start: datetime, end: datetime,
            now: datetime) -> list[PlannedEmail]:  # fmt: skip
    """Every email the rules ask for with a due time in [start, end)."""
    context = _context(settings, start, end, now)
    with scan(db) as reading:
        return [email for batch in _batches(reading, rules, context) for email in batch.emails]


def plan(db: Database, settings: Settings, rules: RuleSet, now: datetime | None = None) -> PlanReport:
    """One planning pass; writes outbox rows (insert-or-ignore), a batch per transaction.

    A pass cut short (crash, shutdown) leaves whole batches behind; the next pass adds the
    rest, and the unique key keeps what is already there from being planned twice.
    """
    moment = now or datetime.now(UTC)
    start = moment - timedelta(days=settings.planning.catch_up_days)
    end = moment + timedelta(hours=settings.planning.lookahead_hours)
    report = PlanReport(start=start, end=end)
    context = _context(settings, start, end, moment)
    domain = settings.sending.message_id_domain
    in_memory = db.is_sqlite and db.url.database in (None, "", ":memory:")
    with scan(db) as reading:
        batches = _batches(reading, rules, context)
        if in_memory:
            # One shared connection: read everything, then write in this thread.
            for batch in list(batches):
                _count(report, batch)
                report.inserted += _write(db, batch, domain)
            return _logged(report)
        # A writer thread stores batch N while this one reads and plans batch N+1: the
        # database works on the insert while Python works on the next candidates.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailcrm-plan-write") as writer:
            pending: deque[Future[int]] = deque()
            for batch in batches:
                _count(report, batch)
                pending.append(writer.submit(_write, db, batch, domain))
                while len(pending) > 1:  # at most one batch queued behind the one being written
                    report.inserted += pending.popleft().result()
            while pending:
                report.inserted += pending.popleft().result()
    return _logged(report)


def _count(report: PlanReport, batch: _Batch) -> None:
    for email in batch.emails:
        report.per_rule[email.rule] = report.per_rule.get(email.rule, 0) + 1
        report.skipped_late += email.state == "skipped"
    report.planned += len(batch.emails)


def _write(db: Database, batch: _Batch, message_id_domain: str | None) -> int:
    """One batch in one transaction: what the outbox does not have yet; how many rows are new.

    Rows go in ordered by their key: two passes at once (two machines) that both insert
    a key wait for each other on it, and in one order they cannot wait in a circle. In
    candidate order (no ORDER BY: scans may differ between passes) PostgreSQL could
    deadlock them and fail one pass.
    """
    with db.write() as session:
        # Every pass plans the whole catch-up range again: what the outbox already has is
        # left out here rather than built and shipped only to be ignored by the insert.
        known = planned_occurrences(session, batch.rule, {email.customer_id for email in batch.emails})
        fresh = sorted(
            (e for e in batch.emails if (e.customer_id, e.occurrence) not in known),
            key=lambda e: (e.customer_id, e.occurrence),
        )
        return outbox.insert_planned(session, fresh, message_id_domain=message_id_domain, owners=batch.owners)


def _logged(report: PlanReport) -> PlanReport:
    log.info(
        "planned %s emails (%s new)",
        report.planned,
        report.inserted,
        extra={"action": "planned", "planned": report.planned, "inserted": report.inserted},
    )
    return report


def forecast(
    db: Database, settings: Settings, rules: RuleSet, at: datetime, days: float
) -> list[PlannedEmail]:
    """What the rules would send from `at` for `days` days; writes nothing."""
    planned = compute(db, settings, rules, at, at + timedelta(days=days), at)
    return sorted(planned, key=lambda email: (email.due_at, email.rule, email.customer_id))


def configured_rules(settings: Settings) -> RuleSet:
    """The rules of `settings.rules_dir`, checked against the templates that exist."""
    from mailcrm.render import TemplateRenderer
    from mailcrm.rules_yaml import load_rules

    directory = settings.rules_path()
    if not directory.is_dir():
        return RuleSet()
    return load_rules(
        directory,
        known_templates=TemplateRenderer(settings.templates_path()).names(),
        salespeople=[person.email for person in settings.salespeople],
    )
