"""Planning: rules + the database → outbox rows (or a forecast that writes nothing).

Each pass covers due times from `now - catch_up` to `now + lookahead`. The store finds
candidates with set-based SQL, streamed in batches; the pure core computes each
occurrence's local send time; the outbox's unique key (rule, customer, occurrence)
makes every pass, on any number of machines, idempotent.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy.engine import Connection

from mailcrm.domain.mime import make_message_id
from mailcrm.domain.occurrences import PlanContext, plan_rule
from mailcrm.domain.planning import PlannedEmail
from mailcrm.domain.rules import RuleSet
from mailcrm.settings import Settings
from mailcrm.store.candidates import candidates
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, OutboxState, table_of
from mailcrm.store.outbox import FALLBACK_ID_DOMAIN

log = logging.getLogger(__name__)

_OUTBOX = table_of(OutboxItem)
_BATCH = 5000
"""Candidates planned, and outbox rows written, per step: memory stays flat however many
customers there are, and no write transaction holds SQLite's lock for long."""
_COLUMNS = (
    "rule", "customer_id", "occurrence", "template", "sender", "due_at", "state", "attempts",
    "message_id", "in_reply_to", "skip_reason", "ambiguous_attempts", "created_at", "updated_at",
)  # fmt: skip
_PG_TYPES = (
    "text", "bigint", "text", "text", "text", "timestamp", "text", "integer",
    "text", "text", "text", "integer", "timestamp", "timestamp",
)  # fmt: skip


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


def _batches(connection: Connection, rules: RuleSet, context: PlanContext) -> Iterator[_Batch]:
    """The planned emails of every enabled rule, `_BATCH` candidates at a time."""
    if connection.dialect.name == "postgresql":
        # The candidate queries scan big tables once and are estimated far above
        # jit_above_cost: compiling them costs more (~0.3 s each) than it saves.
        connection.exec_driver_sql("SET LOCAL jit = off")
    for rule in rules.rules:
        if not rule.enabled:
            continue
        found = candidates(connection, rule, context.start, context.end)
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
    with db.engine.connect() as connection:
        return [email for batch in _batches(connection, rules, context) for email in batch.emails]


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
    with db.engine.connect() as reading:
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
    """One batch in one transaction: what the outbox does not have yet; how many rows are new."""
    with db.write() as session:
        connection = session.connection()
        known = _existing(connection, batch.rule, {email.customer_id for email in batch.emails})
        fresh = [e for e in batch.emails if (e.customer_id, e.occurrence) not in known]
        return _insert(connection, fresh, batch.owners, message_id_domain)


def _logged(report: PlanReport) -> PlanReport:
    log.info(
        "planned %s emails (%s new)",
        report.planned,
        report.inserted,
        extra={"action": "planned", "planned": report.planned, "inserted": report.inserted},
    )
    return report


def _existing(connection: Connection, rule: str, customer_ids: set[int]) -> set[tuple[int, str]]:
    """(customer, occurrence) pairs of `rule` already in the outbox for these customers.

    Every pass plans the whole catch-up range again; one indexed query per batch keeps a
    pass that finds nothing new from building and shipping rows only to see them ignored.
    """
    if not customer_ids:
        return set()
    ids = sorted(customer_ids)
    if connection.dialect.name == "postgresql":
        # A join, not `= ANY(array)`: PostgreSQL scans a parameter array linearly per row.
        query = (
            f"SELECT o.customer_id, o.occurrence FROM {_OUTBOX.name} AS o "
            "JOIN unnest(%b::bigint[]) AS wanted(id) ON o.customer_id = wanted.id WHERE o.rule = %s"
        )
        rows = connection.exec_driver_sql(query, (ids, rule))
    else:
        query = (
            f"SELECT customer_id, occurrence FROM {_OUTBOX.name} "
            "WHERE rule = ? AND customer_id IN (SELECT value FROM json_each(?))"
        )
        rows = connection.exec_driver_sql(query, (rule, json.dumps(ids)))
    return {(int(customer_id), str(occurrence)) for customer_id, occurrence in rows}


def _domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2] or None


def _insert(
    connection: Connection,
    emails: Sequence[PlannedEmail],
    owners: Mapping[int, str | None],
    message_id_domain: str | None,
) -> int:
    """INSERT ... ON CONFLICT (rule, customer_id, occurrence) DO NOTHING for one batch; how many
    rows are new.

    SQLite: one prepared statement through executemany. PostgreSQL: one statement over
    arrays (`unnest`), as a multi-row VALUES statement with thousands of parameters costs
    more to build and parse client-side than the insert itself. Each new row gets its
    Message-ID now, so every later attempt (and any resend after a crash) carries the same one.
    """
    if not emails:
        return 0
    dialect = connection.dialect
    processor = _OUTBOX.c.due_at.type.bind_processor(dialect)

    def stamp(value: datetime) -> Any:
        """A timestamp exactly as the column type stores it (naive UTC; ISO text on SQLite)."""
        return processor(value) if processor is not None else value

    now = stamp(datetime.now(UTC))
    # Message-IDs: 128 random bits like `make_message_id`, whose base32 step is pure Python
    # and, at tens of thousands of rows, a tenth of the pass.
    checked: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    for email in emails:
        domain = (
            message_id_domain
            or _domain_of(email.sender or owners.get(email.customer_id))
            or FALLBACK_ID_DOMAIN
        )
        if domain not in checked:
            make_message_id(domain)  # its checks of the domain, once per domain
            checked.add(domain)
        message_id = f"<{secrets.token_hex(16)}@{domain}>"
        skipped = email.state == OutboxState.SKIPPED.value
        rows.append(
            (
                email.rule,
                email.customer_id,
                email.occurrence,
                email.template,
                email.sender,
                stamp(email.due_at),
                OutboxState.SKIPPED.value if skipped else OutboxState.DUE.value,
                0,
                message_id,
                email.in_reply_to,
                email.note if skipped else None,
                0,
                now,
                now,
            )
        )
    columns = ", ".join(_COLUMNS)
    conflict = "ON CONFLICT (rule, customer_id, occurrence) DO NOTHING"
    if dialect.name == "postgresql":
        # One statement per batch: the rows travel as one array per column.
        arrays = ", ".join(f"%b::{kind}[]" for kind in _PG_TYPES)  # %b: binary, no text quoting
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) SELECT * FROM unnest({arrays}) {conflict}"
        result = connection.exec_driver_sql(
            statement, tuple(list(column) for column in zip(*rows, strict=True))
        )
    else:
        markers = ", ".join("?" * len(_COLUMNS))
        statement = f"INSERT INTO {_OUTBOX.name} ({columns}) VALUES ({markers}) {conflict}"
        result = connection.exec_driver_sql(statement, rows)
    return max(result.rowcount, 0)


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
