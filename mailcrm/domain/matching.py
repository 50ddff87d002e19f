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
- reply fact: an inbound human message from a customer is a reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailcrm.domain.classify import Classification, MessageKind, is_noreply_address
from mailcrm.domain.messages import Mailbox, ParsedMessage

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
    name = " ".join(box.name.split()).strip("'\" ")
    if name and "@" not in name:
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
