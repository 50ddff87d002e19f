"""Storing synced messages: one message per Message-ID, its customer links and timeline events.

`ingest` takes a whole batch: it looks up every address, referenced Message-ID and
domain of the batch with one query each, asks `domain.matching.match` what to do
with each message, and writes the result with bulk statements. Running it twice on
the same messages (a resync, a second mailbox with the same Cc) adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from mailcrm.domain.classify import Classification, MessageKind
from mailcrm.domain.matching import DEFAULT_POLICY, Directory, MatchPolicy, MatchResult, fold_address, match
from mailcrm.domain.messages import ParsedMessage, thread_key
from mailcrm.store.models import (
    CompanyDomain,
    Customer,
    CustomerStatus,
    EmailAddress,
    Message,
    MessageLink,
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

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A parsed message and where it was found."""

    parsed: ParsedMessage
    classification: Classification
    uid: int | None = None


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
    message_ids: list[str] = field(default_factory=list)

    def add(self, other: IngestStats) -> None:
        for name in ("messages", "new_messages", "links", "leads", "new_addresses", "bounces"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.malformed += other.malformed
        self.unmatched += other.unmatched
        self.cancelled_followups += other.cancelled_followups


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


def _event_kind(
    parsed: ParsedMessage, classification: Classification, result: MatchResult, customer: int
) -> str:
    if result.direction == "out":
        return "email_out"
    if classification.kind is MessageKind.AUTO_REPLY:
        return "auto_reply"
    if customer in result.replied:
        return "reply"
    return "email_in"


def _suppress(session: Session, address: str, reason: str, detail: str | None, now: datetime) -> bool:
    exists = session.execute(select(_SUPPRESSION.c.id).where(_SUPPRESSION.c.address == address)).first()
    if exists:
        return False
    session.execute(
        insert(_SUPPRESSION).values(address=address, reason=reason, detail=detail, created_at=now)
    )
    return True


def ingest(
    session: Session,
    items: Sequence[IncomingMessage],
    *,
    mailbox: str,
    folder: str,
    owner_id: int | None,
    team_addresses: frozenset[str],
    policy: MatchPolicy = DEFAULT_POLICY,
) -> IngestStats:
    """Store a batch of messages idempotently; the caller commits (with the cursor)."""
    stats = IngestStats(messages=len(items))
    if not items:
        return stats
    now = utcnow()
    addresses: set[str] = set()
    references: set[str] = set()
    own_ids: set[str] = set()
    for item in items:
        parsed = item.parsed
        own_ids.add(parsed.message_id)
        references.update(parsed.in_reply_to, parsed.references)
        for box in (*parsed.from_, *parsed.to, *parsed.cc):
            if box.address:
                addresses.add(box.address)
        for bounced in item.classification.bounced:
            if bounced.address:
                addresses.add(bounced.address)

    by_address = _lookup_addresses(session, addresses)
    known_messages = _lookup_messages(session, own_ids | references)
    thread_links = _links_of(session, (known_messages[m] for m in references if m in known_messages))
    by_message_id = {
        message_id: frozenset(customer for customer, _ in thread_links.get(pk, ()))
        for message_id, pk in known_messages.items()
        if message_id in references
    }
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
    existing_links = _links_of(session, (known_messages[m] for m in own_ids if m in known_messages))
    replied: set[int] = set()

    for item in items:
        parsed, classification = item.parsed, item.classification
        stats.malformed += int(parsed.malformed)
        result = match(parsed, classification, directory, policy)
        if result.lead is not None and result.lead.address not in by_address:
            lead_id = _create_lead(session, result.lead.address, result.lead.name,
                                   result.lead.company_id, owner_id, policy.lead_source, now)  # fmt: skip
            by_address[result.lead.address] = lead_id
            stats.leads += 1
            result = match(parsed, classification, directory, policy)
        for customer, address in result.new_addresses:
            if address not in by_address:
                session.execute(
                    insert(_ADDRESS).values(
                        customer_id=customer, address=address, is_primary=False, created_at=now
                    )
                )
                by_address[address] = customer
                stats.new_addresses += 1

        message_pk = known_messages.get(parsed.message_id)
        if message_pk is None:
            message_pk = _insert_message(session, item, result, mailbox, folder, now)
            known_messages[parsed.message_id] = message_pk
            stats.new_messages += 1
            stats.message_ids.append(parsed.message_id)
        already = existing_links.setdefault(message_pk, set())
        linked_customers = {customer for customer, _ in already}
        new_links = [link for link in result.links if link not in already]
        if new_links:
            session.execute(
                insert(_LINK),
                [{"message_pk": message_pk, "customer_id": c, "role": r} for c, r in new_links],
            )
            already.update(new_links)
            stats.links += len(new_links)
        # Later messages of this batch may reply to this one.
        by_message_id[parsed.message_id] = frozenset(c for c, _ in already)
        fresh_customers = sorted({c for c, _ in new_links} - linked_customers)
        if fresh_customers:
            session.execute(
                insert(_EVENT),
                [
                    {
                        "customer_id": customer,
                        "kind": _event_kind(parsed, classification, result, customer),
                        "at": parsed.date or now,
                        "message_pk": message_pk,
                        "payload": {"direction": result.direction, "mailbox": mailbox},
                    }
                    for customer in fresh_customers
                ],
            )
        replied.update(result.replied)
        if not result.links and result.lead is None:
            stats.unmatched += 1
        stats.bounces += _record_bounces(session, item, by_address, message_pk, now)
    if replied:  # one statement per batch, not per reply
        stats.cancelled_followups = _cancel_followups(session, sorted(replied), now)
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


def _create_lead(
    session: Session,
    address: str,
    name: str,
    company_id: int | None,
    owner_id: int | None,
    lead_source: str,
    now: datetime,
) -> int:
    customer_id = session.execute(
        insert(_CUSTOMER)
        .values(
            name=name,
            company_id=company_id,
            owner_id=owner_id,
            lead_source=lead_source,
            status=CustomerStatus.LEAD.value,
            custom={},
            created_at=now,
            updated_at=now,
        )
        .returning(_CUSTOMER.c.id)
    ).scalar_one()
    session.execute(
        insert(_ADDRESS).values(customer_id=customer_id, address=address, is_primary=True, created_at=now)
    )
    return int(customer_id)


def _insert_message(
    session: Session,
    item: IncomingMessage,
    result: MatchResult,
    mailbox: str,
    folder: str,
    now: datetime,
) -> int:
    parsed, classification = item.parsed, item.classification
    sender = next((box.address for box in parsed.from_ if box.address), None)
    pk = session.execute(
        insert(_MESSAGE)
        .values(
            message_id=parsed.message_id,
            thread_key=thread_key(parsed),
            direction=result.direction,
            mailbox=mailbox,
            folder=folder,
            uid=item.uid,
            from_address=sender,
            subject=parsed.subject,
            sent_at=parsed.date,
            snippet=parsed.snippet,
            is_auto_reply=classification.kind is MessageKind.AUTO_REPLY,
            is_bounce=classification.kind is MessageKind.BOUNCE,
            is_malformed=parsed.malformed,
            created_at=now,
        )
        .returning(_MESSAGE.c.id)
    ).scalar_one()
    return int(pk)


def _record_bounces(
    session: Session,
    item: IncomingMessage,
    by_address: dict[str, int],
    message_pk: int,
    now: datetime,
) -> int:
    """A hard bounce suppresses the address and tells its customer's timeline."""
    count = 0
    for bounced in item.classification.bounced:
        if not bounced.hard or not bounced.address:
            continue
        if not _suppress(session, bounced.address, "hard_bounce", bounced.diagnostic, now):
            continue
        count += 1
        customer = by_address.get(bounced.address)
        if customer is not None:
            session.execute(
                insert(_EVENT).values(
                    customer_id=customer,
                    kind="bounced",
                    at=item.parsed.date or now,
                    message_pk=message_pk,
                    payload={
                        "address": bounced.address,
                        "status": bounced.status,
                        "diagnostic": bounced.diagnostic,
                        "original_message_id": item.classification.original_message_id,
                    },
                )
            )
    return count
