"""Which customers a message belongs to: the decision, given what the store already knows.

The sync shell looks up, for a batch of messages, every address, every referenced
Message-ID and every domain in one query each, and passes the answers in as a
`Directory`. `match` then decides, with no IO:

- direction: outbound when the sender is a team address, inbound otherwise;
- links: every known customer address in From/To/Cc, with its role;
- thread: an inbound sender we do not know, replying in a thread whose earlier
  messages belong to exactly one customer, is that customer writing from a new
  address: the message is linked and the address recorded on them;
- leads: an unknown human sender (not an auto-reply, bounce, list or no-reply
  address) becomes a lead owned by the mailbox owner, with the company whose mail
  domain it writes from (free-mail domains never identify a company);
- reply fact: an inbound human message from a customer is a reply;
- delivery reports: every recipient a bounce, delay notice, success report or abuse
  complaint names is a report with its reason (`domain.bounce_reasons`), and a timeline
  event (`bounced`, `delayed`, `delivered`, `complained`) for the customer it concerns,
  found by address, else through the returned message's Message-ID. Only a permanent
  recipient failure (`SUPPRESSING`) and a complaint suppress the address; a failure
  caused by the sender's own setup (`SENDER_SIDE`) is marked so, for the salesperson;
- unsubscribe requests: a message carrying a valid token from a List-Unsubscribe
  mailto (`domain.unsubscribe`; the store checks the signature) suppresses the token's
  address and is an `unsubscribed` event. No report and no such request is ever a
  reply or a lead.

`plan_batch` applies `match` to a whole batch in order, so a later message sees the
leads, addresses and thread links of the earlier ones, and returns every row the
batch adds. Rows the batch creates get provisional (negative) ids that the store
replaces with real ones after its bulk inserts: the store never has to interleave
writes with decisions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from mailcrm.domain import unsubscribe
from mailcrm.domain.classify import Classification, MessageKind, classify, is_noreply_address
from mailcrm.domain.delivery_reports import (
    UNSUBSCRIBE,
    PlannedReport,
    PlannedSuppression,
    reports_of,
)
from mailcrm.domain.messages import Mailbox, ParsedMessage, parse_message
from mailcrm.domain.values import has_visible_character, one_line

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.th", "yahoo.co.uk", "yahoo.fr",
        "ymail.com", "hotmail.com", "hotmail.co.th", "hotmail.co.uk", "outlook.com", "live.com",
        "msn.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.de", "gmx.net", "web.de",
        "mail.ru", "yandex.ru", "yandex.com", "qq.com", "163.com", "126.com", "sina.com",
        "proton.me", "protonmail.com", "zoho.com", "naver.com", "daum.net", "fastmail.com",
        "mail.com", "t-online.de", "orange.fr", "free.fr", "libero.it", "seznam.cz",
    }
)  # fmt: skip

_GMAIL = frozenset({"gmail.com", "googlemail.com"})


def fold_address(address: str, *, gmail_dots: bool = True, plus_tags: bool = True) -> str:
    """The key two spellings of one mailbox share: Gmail ignores dots; `+tag` is a sub-address."""
    local, _, domain = address.rpartition("@")
    if plus_tags and "+" in local:
        local = local.split("+", 1)[0]
    if gmail_dots and domain in _GMAIL:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


@dataclass(frozen=True, slots=True)
class Directory:
    """What the store knows about the addresses, threads and domains of a batch."""

    customers_by_address: Mapping[str, int]
    customers_by_message_id: Mapping[str, frozenset[int]]
    companies_by_domain: Mapping[str, int]
    team_addresses: frozenset[str]
    customers_by_folded: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """Per-installation choices (from the configuration)."""

    create_leads: bool = True
    lead_source: str = "inbound-email"
    fold_addresses: bool = False
    soft_bounce_limit: int = 5  # `sending.soft_bounce_limit`: soft failures found by sync count too
    soft_bounce_window: timedelta = timedelta(days=7)


DEFAULT_POLICY = MatchPolicy()


@dataclass(frozen=True, slots=True)
class LeadDraft:
    """A new customer to create for an unknown sender."""

    address: str
    name: str
    company_id: int | None


@dataclass(frozen=True, slots=True)
class MatchResult:
    direction: str  # "in" or "out"
    links: tuple[tuple[int, str], ...]  # (customer id, role) with role from/to/cc
    new_addresses: tuple[tuple[int, str], ...]  # (customer id, address) to record
    lead: LeadDraft | None
    replied: tuple[int, ...]  # customers for whom this is a human reply
    reason: str

    @property
    def customer_ids(self) -> frozenset[int]:
        return frozenset(customer for customer, _ in self.links)


def _addresses(boxes: Sequence[Mailbox]) -> list[str]:
    return [box.address for box in boxes if box.address]


def _lookup(address: str, directory: Directory, policy: MatchPolicy) -> int | None:
    found = directory.customers_by_address.get(address)
    if found is None and policy.fold_addresses:
        found = directory.customers_by_folded.get(fold_address(address))
    return found


def _thread_customers(message: ParsedMessage, directory: Directory) -> frozenset[int]:
    found: set[int] = set()
    for reference in (*message.in_reply_to, *message.references):
        found |= directory.customers_by_message_id.get(reference, frozenset())
    return frozenset(found)


def _lead_name(box: Mailbox) -> str:
    """The display name, unless it shows nothing (zero-width or direction marks only) or an
    address; then the address's local part, so a lead's name is one a person can read
    and that `customers add`, edit and a re-import of the export accept."""
    name = one_line(box.name).strip("'\" ")
    if has_visible_character(name) and "@" not in name:
        return name[:200]
    local = (box.address or "").partition("@")[0]
    return local.replace(".", " ").replace("_", " ").title() or (box.address or "unknown")


def match(
    message: ParsedMessage,
    classification: Classification,
    directory: Directory,
    policy: MatchPolicy = DEFAULT_POLICY,
) -> MatchResult:
    """Decide direction, customer links, new addresses, a new lead and reply facts."""
    senders = _addresses(message.from_)
    sender = senders[0] if senders else None
    outbound = sender is not None and sender in directory.team_addresses
    links: dict[tuple[int, str], None] = {}
    for role, boxes in (("from", message.from_), ("to", message.to), ("cc", message.cc)):
        for address in _addresses(boxes):
            if address in directory.team_addresses:
                continue
            customer = _lookup(address, directory, policy)
            if customer is not None:
                links[(customer, role)] = None

    new_addresses: list[tuple[int, str]] = []
    lead: LeadDraft | None = None
    reason = "outbound" if outbound else "inbound"
    sender_customer = None if sender is None else _lookup(sender, directory, policy)
    human = classification.kind is MessageKind.HUMAN and not classification.noreply_sender

    if not outbound and sender is not None and sender_customer is None:
        thread = _thread_customers(message, directory)
        if len(thread) == 1 and human:
            sender_customer = next(iter(thread))
            links[(sender_customer, "from")] = None
            new_addresses.append((sender_customer, sender))
            reason = "thread: new address of a known customer"
        elif thread:
            for customer in sorted(thread):
                links[(customer, "to")] = None
            reason = "thread"
        elif (
            policy.create_leads
            and human
            and not is_noreply_address(sender)
            and message.from_[0].address is not None
        ):
            domain = sender.rpartition("@")[2]
            company = None if domain in FREE_MAIL_DOMAINS else directory.companies_by_domain.get(domain)
            lead = LeadDraft(address=sender, name=_lead_name(message.from_[0]), company_id=company)
            reason = "new lead" + (" of a known company" if company else "")

    replied: tuple[int, ...] = ()
    if not outbound and human and sender_customer is not None:
        replied = (sender_customer,)
    return MatchResult(
        direction="out" if outbound else "in",
        links=tuple(links),
        new_addresses=tuple(new_addresses),
        lead=lead,
        replied=replied,
        reason=reason,
    )


# --- a whole batch ----------------------------------------------------------------------


_FIRST_LINE = 200  # characters of the first body line kept after classifying


def first_line(text: str) -> str:
    """The first non-blank line of a body, bounded (where some clients put an unsubscribe token)."""
    for line in text[: 16 * _FIRST_LINE].splitlines():
        if line.strip():
            return line.strip()[:_FIRST_LINE]
    return ""


def read_batch(raws: Sequence[bytes]) -> list[tuple[ParsedMessage, Classification]]:
    """Parse and classify raw messages, keeping what matching and the store read.

    The header map and the body text are dropped once classified, except the body's
    first line (an unsubscribe request may carry its token there): the store keeps only
    the snippet, and the smaller record is cheap to hand from a parsing process to the
    storing one.
    """
    read = []
    for raw in raws:
        parsed = parse_message(raw)
        classification = classify(parsed)
        read.append((replace(parsed, text=first_line(parsed.text), headers={}), classification))
    return read


def unsubscribe_token(message: ParsedMessage) -> unsubscribe.UnsubscribeToken | None:
    """The unsubscribe token an incoming message carries in its subject or first body line."""
    return unsubscribe.find((message.subject, first_line(message.text)))


def provisional_id(position: int) -> int:
    """The stand-in id of the `position`-th row of a kind that a batch creates."""
    return -(position + 1)


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """A timeline event; `report` indexes `BatchPlan.reports` for delivery-report events,
    `unsubscribed` is the address an `unsubscribed` event suppressed."""

    customer_id: int
    kind: str
    message_pk: int
    item: int  # index of the batch message it comes from
    report: int | None = None
    unsubscribed: str | None = None


@dataclass
class BatchPlan:
    """Everything a batch adds. Negative customer ids are `leads` (in order), negative
    message pks are `new_messages` (in order), both numbered by `provisional_id`."""

    results: list[MatchResult] = field(default_factory=list)  # per batch message
    message_pks: list[int] = field(default_factory=list)  # per batch message
    new_messages: list[int] = field(default_factory=list)  # batch index of each new message row
    leads: list[LeadDraft] = field(default_factory=list)
    new_addresses: list[tuple[int, str]] = field(default_factory=list)  # (customer, address)
    links: list[tuple[int, int, str]] = field(default_factory=list)  # (message pk, customer, role)
    events: list[PlannedEvent] = field(default_factory=list)
    reports: list[PlannedReport] = field(default_factory=list)
    suppressions: list[PlannedSuppression] = field(default_factory=list)  # addresses not yet suppressed
    replied: set[int] = field(default_factory=set)
    unmatched: int = 0


def event_kind(classification: Classification, result: MatchResult, customer: int) -> str:
    """The timeline kind of a message for one of its customers."""
    if result.direction == "out":
        return "email_out"
    if classification.kind is MessageKind.AUTO_REPLY:
        return "auto_reply"
    if customer in result.replied:
        return "reply"
    return "email_in"


def plan_batch(
    batch: Sequence[tuple[ParsedMessage, Classification]],
    directory: Directory,
    *,
    stored_messages: Mapping[str, int],
    stored_links: Mapping[int, Collection[tuple[int, str]]],
    suppressed: Collection[str],
    policy: MatchPolicy = DEFAULT_POLICY,
    unsubscribes: Mapping[str, tuple[int, str] | None] | None = None,
) -> BatchPlan:
    """Match a batch in order and list the rows it adds.

    `stored_messages` maps the batch's Message-IDs already stored to their pks,
    `stored_links` gives those messages' links, `suppressed` the addresses already
    suppressed. A message stored before (or earlier in the batch) is not added again;
    only its missing links are, and a customer gets a timeline event the first time
    a message is linked to them. Delivery reports are planned once, with the message
    that carries them. `unsubscribes` maps the Message-IDs of unsubscribe requests to
    the (customer, address) their checked token names, or None for a token that did
    not verify (the message is then ordinary inbound mail, but never a reply or a lead).

    `directory.customers_by_message_id` must also cover the original Message-IDs of the
    batch's reports (their customers are found through them when no address matches).
    """
    plan = BatchPlan()
    requests = unsubscribes or {}
    by_address = dict(directory.customers_by_address)
    by_message_id = dict(directory.customers_by_message_id)
    directory = replace(directory, customers_by_address=by_address, customers_by_message_id=by_message_id)
    known = dict(stored_messages)
    links: dict[int, set[tuple[int, str]]] = {}
    suppressed_now = set(suppressed)

    def suppress(entry: PlannedSuppression) -> bool:
        if entry.address in suppressed_now:
            return False
        suppressed_now.add(entry.address)
        plan.suppressions.append(entry)
        return True

    for index, (parsed, classification) in enumerate(batch):
        request = parsed.message_id in requests
        granted = requests.get(parsed.message_id)
        result = match(parsed, classification, directory, policy)
        if request:  # an unsubscribe request answers nothing and makes nobody a lead
            result = replace(result, lead=None, replied=())
        if result.lead is not None and result.lead.address not in by_address:
            by_address[result.lead.address] = provisional_id(len(plan.leads))
            plan.leads.append(result.lead)
            result = match(parsed, classification, directory, policy)
        for customer, address in result.new_addresses:
            if address not in by_address:
                by_address[address] = customer
                plan.new_addresses.append((customer, address))
        message_pk = known.get(parsed.message_id)
        new = message_pk is None
        if message_pk is None:
            message_pk = provisional_id(len(plan.new_messages))
            known[parsed.message_id] = message_pk
            plan.new_messages.append(index)
        already = links.get(message_pk)
        if already is None:
            already = links[message_pk] = set(stored_links.get(message_pk, ()))
        linked_customers = {customer for customer, _ in already}
        new_links = [link for link in result.links if link not in already]
        already.update(new_links)
        plan.links.extend((message_pk, customer, role) for customer, role in new_links)
        # Later messages of this batch may reply to this one.
        by_message_id[parsed.message_id] = frozenset(customer for customer, _ in already)
        unsubscribed = granted[0] if granted is not None and new else None
        original = classification.original_message_id
        reports = (
            reports_of(
                index,
                message_pk,
                classification,
                lambda address: _lookup(address, directory, policy),
                sorted(by_message_id.get(original, frozenset())) if original else [],
            )
            if new
            else []
        )
        # A customer the message's report or unsubscribe event concerns gets that event only.
        covered = {report.customer_id for report in reports} | {unsubscribed}
        for customer in sorted({customer for customer, _ in new_links} - linked_customers):
            if customer in covered:
                continue
            kind = event_kind(classification, result, customer)
            plan.events.append(PlannedEvent(customer, kind, message_pk, index))
        plan.replied.update(result.replied)
        if not result.links and result.lead is None:
            plan.unmatched += 1
        if granted is not None and new:
            customer, address = granted
            asked = f"asked by mail: {parsed.subject[:200]}"
            suppress(PlannedSuppression(address, UNSUBSCRIBE, detail=asked))
            plan.events.append(
                PlannedEvent(customer, "unsubscribed", message_pk, index, unsubscribed=address)
            )
        for report in reports:
            if report.suppress is not None and report.address is not None:
                entry = PlannedSuppression(
                    report.address, report.suppress, report.reason.value, report.status, report.diagnostic
                )
                added = suppress(entry)
                if not added:
                    report = replace(report, suppress=None)  # suppressed before: nothing new
            plan.reports.append(report)
            if report.customer_id is not None:
                at = len(plan.reports) - 1
                plan.events.append(PlannedEvent(report.customer_id, report.kind, message_pk, index, at))
        plan.results.append(result)
        plan.message_pks.append(message_pk)
    return plan
