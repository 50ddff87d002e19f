"""Set-based SQL: which customers a rule may concern in a time range.

Each query returns only the few rows whose trigger date falls near the planning
range (one day of slack either side covers every timezone), never every customer;
the exact local send time is computed afterwards, in the pure core, for those rows.

Purchases are read by their stored local date (`purchased_on`, the customer's calendar
date fixed when the purchase was recorded), never by the UTC date of `purchased_at`:
a purchase dated 2021-11-02 in New York has its anniversary on Nov 2 there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    select,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session

from mailcrm.domain.occurrences import Candidate
from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    Filters,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    Rule,
)
from mailcrm.store.db import Database
from mailcrm.store.models import (
    Customer,
    CustomerStatus,
    CustomerTag,
    DeliveryReport,
    Message,
    MessageLink,
    OutboxItem,
    Purchase,
    Salesperson,
    TimelineEvent,
    table_of,
)

_CUSTOMER = table_of(Customer)
_TAG = table_of(CustomerTag)
_PURCHASE = table_of(Purchase)
_PERSON = table_of(Salesperson)
_MESSAGE = table_of(Message)
_LINK = table_of(MessageLink)
_EVENT = table_of(TimelineEvent)
_OUTBOX = table_of(OutboxItem)
_REPORT = table_of(DeliveryReport)

SLACK = timedelta(days=1)
"""Local dates differ from UTC dates by at most a day (UTC-12 .. UTC+14)."""

_BATCH = 5000


def _on_month_days(connection: Connection, column: Any, start: date, end: date) -> ColumnElement[bool]:
    """`column` (a date or naive-UTC timestamp) falls on one of the month-days in range.

    SQLite stores dates and timestamps as ISO text, so the month-day is characters 6-10
    (no date parsing per row); PostgreSQL compares month * 100 + day as an integer.
    """
    days = _month_days(start, end)
    if connection.dialect.name == "sqlite":
        return func.substr(column, 6, 5).in_(days)
    number = cast(func.date_part("month", column) * 100 + func.date_part("day", column), Integer)
    return number.in_([int(day[:2]) * 100 + int(day[3:]) for day in days])


def _month_days(start: date, end: date) -> list[str]:
    """Every MM-DD between start and end (inclusive, with slack); Feb 29 included whenever
    Feb 28 or Mar 1 is in range, since those are where Feb 29 falls in common years."""
    days: set[str] = set()
    day = start - SLACK
    while day <= end + SLACK and len(days) < 367:
        days.add(day.strftime("%m-%d"))
        day += timedelta(days=1)
    if "02-28" in days or "03-01" in days:
        days.add("02-29")
    return sorted(days)


def _filtered(statement: Select[Any], rule: Rule, connection: Connection) -> Select[Any]:
    """The rule's `where` filters and owner as SQL conditions (archived customers never)."""
    filters: Filters = rule.filters
    customer = _CUSTOMER.c
    statement = statement.where(customer.status != CustomerStatus.ARCHIVED.value)
    if filters.statuses:
        statement = statement.where(customer.status.in_(sorted(filters.statuses)))
    if filters.lead_sources:
        statement = statement.where(customer.lead_source.in_(sorted(filters.lead_sources)))
    if filters.languages:
        statement = statement.where(customer.language.in_(sorted(filters.languages)))
    owners = set(filters.owners) | ({rule.owner} if rule.owner else set())
    if owners:
        statement = statement.where(
            customer.owner_id.in_(select(_PERSON.c.id).where(_PERSON.c.email.in_(sorted(owners))))
        )
    if filters.tags:
        statement = statement.where(
            exists().where(_TAG.c.customer_id == customer.id, _TAG.c.tag.in_(sorted(filters.tags)))
        )
    if filters.bought:
        names = _products_named(connection, filters.bought)
        bought = _PURCHASE.alias("bought")
        statement = statement.where(
            exists().where(bought.c.customer_id == customer.id, bought.c.product.in_(names))
            if names
            else false()
        )
    if filters.spend_min_minor is not None or filters.spend_max_minor is not None:
        paid = _PURCHASE.alias("paid")
        spent = (
            select(func.coalesce(func.sum(paid.c.amount_minor), 0))
            .where(paid.c.customer_id == customer.id)
            .where(paid.c.currency == (filters.spend_currency or "USD"))
            .scalar_subquery()
        )
        if filters.spend_min_minor is not None:
            statement = statement.where(spent >= filters.spend_min_minor)
        if filters.spend_max_minor is not None:
            statement = statement.where(spent <= filters.spend_max_minor)
    return statement


def _product_key(name: str) -> str:
    """A product name as `bought` compares it: Unicode case folding of the canonical form,
    so "ÖKO-Panel", "öko-panel" and "Öko-Panel" are one product (as are "STRASSE" and "Straße")."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


def _products_named(connection: Connection, wanted: Iterable[str]) -> list[str]:
    """The product names, exactly as stored, that equal one of `wanted` ignoring case.

    The comparison runs in Python (`_product_key`), the same on every store: SQLite's
    lower() folds ASCII only and PostgreSQL's depends on the database's LC_CTYPE. A store
    holds far fewer distinct product names than purchases and reading them is one pass
    over the product index, done once per rule and pass; the filter itself is then a plain
    `product IN (...)` probe per customer.
    """
    keys = {_product_key(name) for name in wanted}
    stored = connection.execute(select(_PURCHASE.c.product).distinct()).scalars()
    return sorted(name for name in stored if name is not None and _product_key(name) in keys)


def _base(*extra: Any) -> Select[Any]:
    return select(
        _CUSTOMER.c.id,
        _CUSTOMER.c.timezone,
        _CUSTOMER.c.language,
        _PERSON.c.email.label("owner"),
        *extra,
    ).select_from(_CUSTOMER.outerjoin(_PERSON, _PERSON.c.id == _CUSTOMER.c.owner_id))


def _rows(
    connection: Connection, statement: Select[Any], ref: bool = False, local: bool = False
) -> Iterator[Candidate]:
    """Candidates from rows of (id, timezone, language, owner, anchor, ref[, local date,
    has time]): `local` when the statement selects a purchase's local date and time flag."""
    result = connection.execution_options(yield_per=_BATCH).execute(statement)
    for row in result:
        yield Candidate(
            customer_id=row[0],
            timezone=row[1],
            language=row[2],
            owner=row[3],
            anchor=row[4],
            ref=str(row[5]) if ref and row[5] is not None else None,
            local_date=row[6] if local else None,
            timed=bool(row[7]) if local else True,
        )


@contextmanager
def scan(db: Database) -> Iterator[Session]:
    """A read transaction for a planning pass's candidate queries (it takes the `Database`:
    it opens the transaction, which the pass holds while a writer thread commits batches).

    On PostgreSQL JIT is off for it: the candidate queries scan big tables once and are
    estimated far above jit_above_cost, so compiling them costs more (~0.3 s each) than
    it saves.
    """
    with db.read() as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL jit = off")
        yield session


def candidates(session: Session, rule: Rule, start: datetime, end: datetime) -> Iterator[Candidate]:
    """Customers for whom `rule` may fall due between `start` and `end` (UTC, aware), streamed
    in batches from the session's connection (open it with `scan`)."""
    connection = session.connection()
    trigger = rule.trigger
    if isinstance(trigger, AfterPurchase):
        # A date-only purchase is due at the rule's send time on its local day, up to a day
        # after its stored instant (the start of that day): one more day of slack before.
        low, high = start - trigger.wait - 2 * SLACK, end - trigger.wait + SLACK
        # An alias: the `bought`/`spend` filters' subqueries over purchase must see every
        # purchase of the customer, not be correlated to this one.
        purchase = _PURCHASE.alias("trigger")
        statement = _base(
            purchase.c.purchased_at, purchase.c.id, purchase.c.purchased_on, purchase.c.has_time
        ).join(purchase, purchase.c.customer_id == _CUSTOMER.c.id)
        statement = statement.where(purchase.c.purchased_at.between(low, high))
        yield from _rows(connection, _filtered(statement, rule, connection), ref=True, local=True)
    elif isinstance(trigger, AnniversaryOf):
        yield from _anniversaries(connection, rule, trigger, start.date(), end.date())
    elif isinstance(trigger, NoPurchaseFor):
        last = (
            select(_PURCHASE.c.customer_id, func.max(_PURCHASE.c.purchased_at).label("last"))
            .group_by(_PURCHASE.c.customer_id)
            .subquery()
        )
        low, high = start - trigger.period - 2 * SLACK, end - trigger.period + SLACK
        # The last purchase's own row, for its local date and whether it had a time.
        newest = _PURCHASE.alias("newest")
        statement = (
            _base(last.c["last"], literal(None), newest.c.purchased_on, newest.c.has_time)
            .join(last, last.c.customer_id == _CUSTOMER.c.id)
            .join(
                newest,
                and_(newest.c.customer_id == last.c.customer_id, newest.c.purchased_at == last.c["last"]),
            )
            .where(last.c["last"].between(low, high))
            .distinct()  # two purchases at the same last instant are one lapse
        )
        yield from _rows(connection, _filtered(statement, rule, connection), local=True)
    elif isinstance(trigger, OnDate):
        if not _campaign_in_range(trigger, start, end):
            return
        statement = _base(literal(None), literal(None))
        yield from _rows(connection, _filtered(statement, rule, connection))
    elif isinstance(trigger, OnEvent):
        low, high = start - trigger.wait - SLACK, end - trigger.wait + SLACK
        statement = _base(_EVENT.c.at, _EVENT.c.id).join(_EVENT, _EVENT.c.customer_id == _CUSTOMER.c.id)
        statement = statement.where(_EVENT.c.kind == trigger.kind, _EVENT.c.at.between(low, high))
        yield from _rows(connection, _filtered(statement, rule, connection), ref=True)
    elif isinstance(trigger, NoReplyTo):
        yield from _unanswered(connection, rule, trigger, start, end)


CAMPAIGN_SLACK = timedelta(days=9)
"""A send window can defer a campaign by up to a week (closed days), plus a zone offset."""


def _campaign_in_range(trigger: OnDate, start: datetime, end: datetime) -> bool:
    """Whether a one-off date can fall due in [start, end): if not, no customer is read."""
    at = trigger.at if trigger.at.tzinfo is not None else trigger.at.replace(tzinfo=UTC)
    return start - CAMPAIGN_SLACK <= at <= end + SLACK


def _anniversaries(
    connection: Connection, rule: Rule, trigger: AnniversaryOf, start: date, end: date
) -> Iterator[Candidate]:
    field = trigger.field
    if field == "birthday":
        column: Any = _CUSTOMER.c.birthday
        statement = _base(column, literal(None))
    elif field == "customer_since":
        column = _CUSTOMER.c.created_at
        statement = _base(column, literal(None))
    elif field in ("first_purchase", "last_purchase"):
        # The purchases whose local date is on a month-day in range and that have no earlier
        # (later) local date of the same customer: an index probe per matching row instead
        # of aggregating every customer. Aliases, so the `bought`/`spend` filters'
        # subqueries still see all purchases.
        anchor, other = _PURCHASE.alias("anchor"), _PURCHASE.alias("other")
        column = anchor.c.purchased_on
        beyond = other.c.purchased_on < column if field == "first_purchase" else other.c.purchased_on > column
        statement = (
            _base(column, literal(None))
            .join(anchor, anchor.c.customer_id == _CUSTOMER.c.id)
            .where(not_(exists().where(other.c.customer_id == anchor.c.customer_id, beyond)))
            .distinct()  # two purchases on the same first day are one anniversary
        )
    elif field.startswith("custom."):
        key = field[len("custom.") :]
        if connection.dialect.name == "sqlite":
            column = func.json_extract(_CUSTOMER.c.custom, _json_path(key))
        else:
            column = _CUSTOMER.c.custom.op("->>")(key)
        statement = _base(column, literal(None))
        # A custom date is text (YYYY-MM-DD...): its month-day is characters 6-10.
        statement = statement.where(func.substr(column, 6, 5).in_(_month_days(start, end)))
        yield from _rows(connection, _filtered(statement, rule, connection))
        return
    else:
        return
    statement = statement.where(_on_month_days(connection, column, start, end))
    yield from _rows(connection, _filtered(statement, rule, connection))


_JSON_KEY = re.compile(r"[A-Za-z0-9_.-]+")


def _json_path(key: str) -> str:
    """SQLite's JSON path of the top-level key `key`, quoted so "contract.signed" is one key,
    not `contract` then `signed` (bound as a parameter, never spliced into SQL).

    SQLite's path syntax has no escape inside a quoted label, so only the characters of a
    custom field name (`normalize_custom_key`: letters, digits, _ . -) are accepted: no
    key can close the quotes and add path steps of its own.
    """
    if not _JSON_KEY.fullmatch(key):
        raise ValueError(f"invalid custom field name {key!r}")
    return f'$."{key}"'


def _unanswered(
    connection: Connection, rule: Rule, trigger: NoReplyTo, start: datetime, end: datetime
) -> Iterator[Candidate]:
    """Outbound emails still without a reply whose follow-ups fall in the range.

    An email that came back (a failed delivery report names it, whatever the reason)
    reached nobody: following it up would make no sense.
    """
    span = trigger.delay(trigger.steps)
    low, high = start - span - SLACK, end - trigger.wait + SLACK
    replied = exists().where(
        _EVENT.c.customer_id == _CUSTOMER.c.id,
        _EVENT.c.kind == "reply",
        _EVENT.c.at > _MESSAGE.c.sent_at,
    )
    returned = exists().where(
        _REPORT.c.original_message_id == _MESSAGE.c.message_id, _REPORT.c.kind == "bounced"
    )
    # Follow-ups are outbound too: never follow up on this rule's own emails.
    own = select(_OUTBOX.c.message_id).where(_OUTBOX.c.rule == rule.name).scalar_subquery()
    statement = (
        _base(_MESSAGE.c.sent_at, _MESSAGE.c.message_id)
        .join(_LINK, _LINK.c.customer_id == _CUSTOMER.c.id)
        .join(_MESSAGE, _MESSAGE.c.id == _LINK.c.message_pk)
        .where(
            _MESSAGE.c.direction == "out",
            _MESSAGE.c.sent_at.between(low, high),
            _LINK.c.role.in_(("to", "cc")),
            not_(replied),
            not_(returned),
            _MESSAGE.c.message_id.not_in(own),
        )
    )
    if trigger.source != "any_outbound":
        sources = select(_OUTBOX.c.message_id).where(_OUTBOX.c.rule == trigger.source).scalar_subquery()
        statement = statement.where(_MESSAGE.c.message_id.in_(sources))
    yield from _rows(connection, _filtered(statement, rule, connection), ref=True)
