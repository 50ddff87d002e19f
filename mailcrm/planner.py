"""Planning: rules + the database → outbox rows (or a forecast that writes nothing).

Each pass covers due times from `now - catch_up` to `now + lookahead`. The store finds
candidates with set-based SQL; the pure core computes each occurrence's local send
time; the outbox's unique key (rule, customer, occurrence) makes every pass, on any
number of machines, idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailcrm.domain.occurrences import PlanContext, plan_rule
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.rules import RuleSet
from mailcrm.settings import Settings
from mailcrm.store import outbox
from mailcrm.store.candidates import candidates
from mailcrm.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class PlanReport:
    """What a planning pass found and wrote."""

    start: datetime
    end: datetime
    planned: int = 0
    inserted: int = 0
    skipped_late: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)


def _context(settings: Settings, start: datetime, end: datetime, now: datetime) -> PlanContext:
    return PlanContext(
        start=start,
        end=end,
        now=now,
        grace=timedelta(hours=settings.planning.grace_hours),
        default_timezone=settings.defaults.timezone,
        leap_day=settings.planning.leap_day,
    )


def compute(db: Database, settings: Settings, rules: RuleSet, start: datetime, end: datetime,
            now: datetime) -> list[PlannedEmail]:  # fmt: skip
    """Every email the rules ask for with a due time in [start, end)."""
    context = _context(settings, start, end, now)
    planned: list[PlannedEmail] = []
    with db.engine.connect() as connection:
        for rule in rules.rules:
            if not rule.enabled:
                continue
            planned.extend(plan_rule(rule, candidates(connection, rule, start, end), context))
    return planned


def plan(db: Database, settings: Settings, rules: RuleSet, now: datetime | None = None) -> PlanReport:
    """One planning pass; writes outbox rows (insert-or-ignore)."""
    moment = now or datetime.now(UTC)
    start = moment - timedelta(days=settings.planning.catch_up_days)
    end = moment + timedelta(hours=settings.planning.lookahead_hours)
    planned = compute(db, settings, rules, start, end, moment)
    report = PlanReport(start=start, end=end, planned=len(planned))
    for email in planned:
        report.per_rule[email.rule] = report.per_rule.get(email.rule, 0) + 1
        report.skipped_late += email.state == "skipped"
    with db.write() as session:
        report.inserted = outbox.insert_planned(
            session, planned, message_id_domain=settings.sending.message_id_domain
        )
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
