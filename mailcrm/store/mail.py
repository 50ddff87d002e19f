"""Storing synced messages: one message per Message-ID, its customer links, timeline
events and folder locations.

`ingest` takes a whole batch: it looks up every address, referenced Message-ID and
domain of the batch with one query each, asks `domain.matching.plan_batch` what the
batch adds, and writes each kind of row with one bulk statement (per-row statements
made ingest the bottleneck of an initial sync). Running it twice on the same messages
(a resync, a second mailbox with the same Cc) adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlmodel import Session

from mailcrm.domain.classify import Classification, MessageKind
from mailcrm.domain.delivery_reports import REPORT_EVENTS
from mailcrm.domain.matching import (
    DEFAULT_POLICY,
    BatchPlan,
    Directory,
    MatchPolicy,
    MatchResult,
    PlannedEvent,
    fold_address,
    plan_batch,
)
from mailcrm.domain.messages import ParsedMessage, flags_text, thread_key
from mailcrm.store.delivery_reports import (
    apply_soft_limit,
    report_payload,
    unsubscribe_requests,
    write_reports,
)
from mailcrm.store.models import (
    CompanyDomain,
    Customer,
    CustomerStatus,
    EmailAddress,
    Message,
    MessageLink,
    MessageLocation,
    OutboxItem,
    OutboxState,
    Suppression,
    TimelineEvent,
    table_of,
)
from mailcrm.store.types import utcnow

_MESSAGE = table_of(Message)
_LINK = table_of(MessageLink)
_EVENT = table_of(TimelineEvent)
_ADDRESS = table_of(EmailAddress)
_CUSTOMER = table_of(Customer)
_SUPPRESSION = table_of(Suppression)
_DOMAIN = table_of(CompanyDomain)
_OUTBOX = table_of(OutboxItem)
_LOCATION = table_of(MessageLocation)

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A parsed message and where it was found."""

    parsed: ParsedMessage
    classification: Classification
    uid: int | None = None
    flags: frozenset[str] = frozenset()
    modseq: int | None = None


@dataclass
class IngestStats:
    """What a batch changed (for progress output and `mailboxes status`)."""

    messages: int = 0
    new_messages: int = 0
    links: int = 0
    leads: int = 0
    new_addresses: int = 0
    bounces: int = 0
    malformed: int = 0
    unmatched: int = 0
    cancelled_followups: int = 0
    confirmed_sends: int = 0  # outbox rows of unknown outcome found in this mailbox
    message_ids: list[str] = field(default_factory=list)
    sender_issues: list[str] = field(default_factory=list)  # first sightings: log once committed

    def add(self, other: IngestStats) -> None:
        for name in ("messages", "new_messages", "links", "leads", "new_addresses", "bounces"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.malformed += other.malformed
        self.unmatched += other.unmatched
        self.cancelled_followups += other.cancelled_followups
        self.confirmed_sends += other.confirmed_sends
        self.sender_issues += other.sender_issues


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _lookup_addresses(session: Session, addresses: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(addresses)
    for chunk in _chunks(ordered):
        query = select(_ADDRESS.c.address, _ADDRESS.c.customer_id).where(_ADDRESS.c.address.in_(chunk))
        found.update({row.address: row.customer_id for row in session.execute(query)})
    return found


def _lookup_messages(session: Session, message_ids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(message_ids)):
        query = select(_MESSAGE.c.message_id, _MESSAGE.c.id).where(_MESSAGE.c.message_id.in_(chunk))
        found.update({row.message_id: row.id for row in session.execute(query)})
    return found


def _links_of(session: Session, message_pks: Iterable[int]) -> dict[int, set[tuple[int, str]]]:
    found: dict[int, set[tuple[int, str]]] = defaultdict(set)
    for chunk in _chunks(sorted(set(message_pks))):
        query = select(_LINK.c.message_pk, _LINK.c.customer_id, _LINK.c.role).where(
            _LINK.c.message_pk.in_(chunk)
        )
        for row in session.execute(query):
            found[row.message_pk].add((row.customer_id, row.role))
    return found


def _lookup_domains(session: Session, domains: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(domains)):
        query = select(_DOMAIN.c.domain, _DOMAIN.c.company_id).where(_DOMAIN.c.domain.in_(chunk))
        found.update({row.domain: row.company_id for row in session.execute(query)})
    return found


def _folded_index(session: Session, folded: set[str]) -> dict[str, int]:
    """Customers by folded address, for the optional Gmail-dot / plus-tag folding."""
    domains = {key.rpartition("@")[2] for key in folded}
    if "gmail.com" in domains:
        domains.add("googlemail.com")
    found: dict[str, int] = {}
    for domain in sorted(domains):
        query = select(_ADDRESS.c.address, _ADDRESS.c.customer_id).where(
            _ADDRESS.c.address.like(f"%@{domain}")
        )
        for row in session.execute(query):
            key = fold_address(row.address)
            if key in folded:
                found.setdefault(key, row.customer_id)
    return found


def _suppressed(session: Session, addresses: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(addresses)):
        query = select(_SUPPRESSION.c.address).where(_SUPPRESSION.c.address.in_(chunk))
        found.update(row.address for row in session.execute(query))
    return found


def _stored_locations(
    session: Session, mailbox: str, folder: str, uidvalidity: int | None, uids: set[int]
) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(sorted(uids)):
        query = select(_LOCATION.c.uid).where(
            _LOCATION.c.mailbox == mailbox,
            _LOCATION.c.folder == folder,
            _LOCATION.c.uidvalidity.is_(None)
            if uidvalidity is None
            else _LOCATION.c.uidvalidity == uidvalidity,
            _LOCATION.c.uid.in_(chunk),
        )
        found.update(row.uid for row in session.execute(query))
    return found


def _insert_returning_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk insert; the new ids in the order of `rows` (one statement per page on
    PostgreSQL, per row on SQLite, where RETURNING has no guaranteed order)."""
    if not rows:
        return []
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(pk) for pk in session.execute(statement, rows).scalars()]


def _insert_messages(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk insert; the new ids in the order of `rows`, matched by their unique
    Message-ID (an unordered RETURNING stays one statement per page on SQLite too)."""
    if not rows:
        return []
    statement = insert(_MESSAGE).returning(_MESSAGE.c.id, _MESSAGE.c.message_id)
    ids = {row.message_id: int(row.id) for row in session.execute(statement, rows)}
    return [ids[row["message_id"]] for row in rows]


def _real(ids: Sequence[int]) -> Callable[[int], int]:
    """Provisional (negative) ids of a plan to the ids the database assigned."""

    def resolve(value: int) -> int:
        return ids[-value - 1] if value < 0 else value

    return resolve


def ingest(
    session: Session,
    items: Sequence[IncomingMessage],
    *,
    mailbox: str,
    folder: str,
    owner_id: int | None,
    team_addresses: frozenset[str],
    policy: MatchPolicy = DEFAULT_POLICY,
    uidvalidity: int | None = None,
) -> IngestStats:
    """Store a batch of messages idempotently; the caller commits (with the cursor).

    Reads what the store knows in one query per kind, plans the batch with no IO,
    then writes each kind of row with one bulk statement.
    """
    stats = IngestStats(messages=len(items))
    if not items:
        return stats
    now = utcnow()
    addresses: set[str] = set()
    references: set[str] = set()
    own_ids: set[str] = set()
    reported: set[str] = set()  # addresses a report may suppress
    for item in items:
        parsed = item.parsed
        own_ids.add(parsed.message_id)
        references.update(parsed.in_reply_to, parsed.references)
        original = item.classification.original_message_id
        if original and item.classification.kind in REPORT_EVENTS:
            references.add(original)  # a report's customers, when no address matches
        for box in (*parsed.from_, *parsed.to, *parsed.cc):
            if box.address:
                addresses.add(box.address)
        for bounced in item.classification.bounced:
            if bounced.address:
                addresses.add(bounced.address)
                reported.add(bounced.address)

    by_address = _lookup_addresses(session, addresses)
    known_messages = _lookup_messages(session, own_ids | references)
    thread_links = _links_of(session, (known_messages[m] for m in references if m in known_messages))
    by_message_id = {
        message_id: frozenset(customer for customer, _ in thread_links.get(pk, ()))
        for message_id, pk in known_messages.items()
        if message_id in references
    }
    requests = unsubscribe_requests(session, (item.parsed for item in items), team_addresses)
    reported.update(granted[1] for granted in requests.values() if granted is not None)
    domains = {address.rpartition("@")[2] for address in addresses}
    directory = Directory(
        customers_by_address=by_address,
        customers_by_message_id=by_message_id,
        companies_by_domain=_lookup_domains(session, domains),
        team_addresses=team_addresses,
        customers_by_folded=(
            _folded_index(session, {fold_address(a) for a in addresses}) if policy.fold_addresses else {}
        ),
    )
    stored = {m: pk for m, pk in known_messages.items() if m in own_ids}
    suppressed = _suppressed(session, reported) if reported else set()
    plan = plan_batch(
        [(item.parsed, item.classification) for item in items],
        directory,
        stored_messages=stored,
        stored_links=_links_of(session, stored.values()),
        suppressed=suppressed,
        policy=policy,
        unsubscribes=requests,
    )
    apply_soft_limit(session, plan, policy, suppressed, now)

    customer = _real(_insert_leads(session, plan, owner_id, policy.lead_source, now))
    address_rows = [
        {"customer_id": customer(c), "address": address, "is_primary": False, "created_at": now}
        for c, address in plan.new_addresses
    ]
    if address_rows:
        session.execute(insert(_ADDRESS), address_rows)
    message_rows = [
        _message_row(items[index], plan.results[index], mailbox, folder, now) for index in plan.new_messages
    ]
    message = _real(_insert_messages(session, message_rows))
    if plan.links:
        link_rows = [
            {"message_pk": message(m), "customer_id": customer(c), "role": r} for m, c, r in plan.links
        ]
        session.execute(insert(_LINK), link_rows)
    if plan.suppressions:
        suppression_rows = [
            {
                "address": entry.address,
                "reason": entry.reason,
                "detail": entry.detail,
                "bounce_reason": entry.bounce_reason,
                "status": entry.status,
                "created_at": now,
            }
            for entry in plan.suppressions
        ]
        session.execute(insert(_SUPPRESSION), suppression_rows)
    if plan.events:
        event_rows = [
            _event_row(items[e.item], plan, e, customer, message, mailbox, now) for e in plan.events
        ]
        session.execute(insert(_EVENT), event_rows)
    _insert_locations(session, items, [message(pk) for pk in plan.message_pks], mailbox, folder, uidvalidity)
    dates = [item.parsed.date or now for item in items]
    stats.sender_issues = write_reports(
        session, plan, dates, customer=customer, message=message, mailbox=mailbox, now=now
    )

    stats.new_messages = len(plan.new_messages)
    stats.message_ids = [items[index].parsed.message_id for index in plan.new_messages]
    stats.leads = len(plan.leads)
    stats.new_addresses = len(plan.new_addresses)
    stats.links = len(plan.links)
    stats.bounces = sum(1 for report in plan.reports if report.kind == "bounced")
    stats.unmatched = plan.unmatched
    stats.malformed = sum(int(item.parsed.malformed) for item in items)
    if plan.replied:  # one statement per batch, not per reply
        stats.cancelled_followups = _cancel_followups(
            session, sorted({customer(c) for c in plan.replied}), now
        )
    return stats


def _cancel_followups(session: Session, customers: Sequence[int], now: datetime) -> int:
    """A human reply stops the follow-ups still waiting for that customer."""
    result = session.execute(
        update(_OUTBOX)
        .where(
            _OUTBOX.c.customer_id.in_(list(customers)),
            _OUTBOX.c.state == OutboxState.DUE.value,
            _OUTBOX.c.occurrence.like("followup:%"),
        )
        .values(
            state=OutboxState.CANCELLED.value, skip_reason="replied: the customer answered", updated_at=now
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _insert_leads(
    session: Session, plan: BatchPlan, owner_id: int | None, lead_source: str, now: datetime
) -> list[int]:
    """The batch's new customers and their primary addresses; their ids in plan order."""
    rows: list[dict[str, Any]] = [
        {
            "name": lead.name,
            "company_id": lead.company_id,
            "owner_id": owner_id,
            "lead_source": lead_source,
            "status": CustomerStatus.LEAD.value,
            "custom": {},
            "created_at": now,
            "updated_at": now,
        }
        for lead in plan.leads
    ]
    ids = _insert_returning_ids(session, _CUSTOMER, rows)
    if ids:
        session.execute(
            insert(_ADDRESS),
            [
                {"customer_id": pk, "address": lead.address, "is_primary": True, "created_at": now}
                for pk, lead in zip(ids, plan.leads, strict=True)
            ],
        )
    return ids


def _message_row(
    item: IncomingMessage, result: MatchResult, mailbox: str, folder: str, now: datetime
) -> dict[str, Any]:
    parsed, classification = item.parsed, item.classification
    return {
        "message_id": parsed.message_id,
        "thread_key": thread_key(parsed),
        "direction": result.direction,
        "mailbox": mailbox,
        "folder": folder,
        "uid": item.uid,
        "from_address": next((box.address for box in parsed.from_ if box.address), None),
        "subject": parsed.subject,
        "sent_at": parsed.date,
        "snippet": parsed.snippet,
        "is_auto_reply": classification.kind is MessageKind.AUTO_REPLY,
        "is_bounce": classification.kind is MessageKind.BOUNCE,
        "is_malformed": parsed.malformed,
        "created_at": now,
    }


def _event_row(
    item: IncomingMessage,
    plan: BatchPlan,
    event: PlannedEvent,
    customer: Callable[[int], int],
    message: Callable[[int], int],
    mailbox: str,
    now: datetime,
) -> dict[str, Any]:
    payload: dict[str, Any]
    if event.report is not None:
        payload = report_payload(plan.reports[event.report])
    elif event.unsubscribed is not None:
        payload = {
            "summary": f"unsubscribed: {event.unsubscribed} asked by mail to receive no more automated email",
            "address": event.unsubscribed,
            "suppressed": True,
            "mailbox": mailbox,
        }
    else:
        payload = {"direction": plan.results[event.item].direction, "mailbox": mailbox}
    return {
        "customer_id": customer(event.customer_id),
        "kind": event.kind,
        "at": item.parsed.date or now,
        "message_pk": message(event.message_pk),
        "payload": payload,
    }


def _stored_flags(flags: Iterable[str]) -> str:
    """Flags as stored; ``\\Recent`` is left out: it belongs to one IMAP session, not the message."""
    return flags_text(flag for flag in flags if flag.lower() != "\\recent")


def _insert_locations(
    session: Session,
    items: Sequence[IncomingMessage],
    message_pks: Sequence[int],
    mailbox: str,
    folder: str,
    uidvalidity: int | None,
) -> None:
    """Where each fetched message sits (messages from files have no UID, hence no location)."""
    located = {
        item.uid: (item, pk) for item, pk in zip(items, message_pks, strict=True) if item.uid is not None
    }
    if not located:
        return
    stored = _stored_locations(session, mailbox, folder, uidvalidity, set(located))
    rows: list[dict[str, Any]] = [
        {
            "message_pk": pk,
            "mailbox": mailbox,
            "folder": folder,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "flags": _stored_flags(item.flags),
            "modseq": item.modseq,
        }
        for uid, (item, pk) in located.items()
        if uid not in stored
    ]
    if rows:
        session.execute(insert(_LOCATION), rows)


# -- folder changes (flags, expunges) ------------------------------------------------------

_RANGES_PER_STATEMENT = 200


def _folder_rows(mailbox: str, folder: str, uidvalidity: int) -> Any:
    return and_(
        _LOCATION.c.mailbox == mailbox,
        _LOCATION.c.folder == folder,
        _LOCATION.c.uidvalidity == uidvalidity,
    )


def live_location_count(session: Session, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> int:
    """Messages of the folder up to `last_uid` not known to be expunged (a cheap check
    before asking the server for every UID)."""
    query = select(func.count()).where(
        _folder_rows(mailbox, folder, uidvalidity),
        _LOCATION.c.uid <= last_uid,
        _LOCATION.c.expunged_at.is_(None),
    )
    return int(session.execute(query).scalar_one())


def live_location_uids(
    session: Session, mailbox: str, folder: str, uidvalidity: int, last_uid: int
) -> set[int]:
    query = select(_LOCATION.c.uid).where(
        _folder_rows(mailbox, folder, uidvalidity),
        _LOCATION.c.uid <= last_uid,
        _LOCATION.c.expunged_at.is_(None),
    )
    return {int(uid) for uid in session.execute(query).scalars()}


def apply_flag_changes(
    session: Session,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    changes: Sequence[tuple[int, frozenset[str], int | None]],
) -> int:
    """New flags and MODSEQ of (uid, flags, modseq) changes: one statement, many rows."""
    if not changes:
        return 0
    statement = (
        update(_LOCATION)
        .where(_folder_rows(mailbox, folder, uidvalidity), _LOCATION.c.uid == bindparam("b_uid"))
        .values(flags=bindparam("b_flags"), modseq=bindparam("b_modseq"))
    )
    rows = [
        {"b_uid": uid, "b_flags": _stored_flags(flags), "b_modseq": modseq} for uid, flags, modseq in changes
    ]
    session.connection().execute(statement, rows)
    return len(rows)


def mark_expunged(
    session: Session,
    mailbox: str,
    folder: str,
    uidvalidity: int,
    ranges: Sequence[tuple[int, int]],
    at: datetime | None = None,
) -> int:
    """Mark the locations in the UID ranges expunged; the rows stay (the timeline keeps
    its history). Ranges are never expanded: a VANISHED set can span millions of UIDs."""
    moment = at or utcnow()
    marked = 0
    for start in range(0, len(ranges), _RANGES_PER_STATEMENT):
        chunk = ranges[start : start + _RANGES_PER_STATEMENT]
        result = session.execute(
            update(_LOCATION)
            .where(
                _folder_rows(mailbox, folder, uidvalidity),
                _LOCATION.c.expunged_at.is_(None),
                or_(*(_LOCATION.c.uid.between(low, high) for low, high in chunk)),
            )
            .values(expunged_at=moment)
        )
        marked += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return marked


def expunge_other_validities(
    session: Session, mailbox: str, folder: str, uidvalidity: int, at: datetime | None = None
) -> int:
    """A new UIDVALIDITY voids every older location of the folder: they are marked
    expunged (kept, like every expunge); the resync adds the current ones."""
    result = session.execute(
        update(_LOCATION)
        .where(
            _LOCATION.c.mailbox == mailbox,
            _LOCATION.c.folder == folder,
            or_(_LOCATION.c.uidvalidity.is_(None), _LOCATION.c.uidvalidity != uidvalidity),
            _LOCATION.c.expunged_at.is_(None),
        )
        .values(expunged_at=at or utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
