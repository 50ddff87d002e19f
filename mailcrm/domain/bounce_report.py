"""Machine-readable reports: RFC 3464 delivery status notifications and RFC 5965 complaints.

A DSN lists each recipient with an `Action` (failed, delayed, delivered, relayed,
expanded), a `Status` and usually a `Diagnostic-Code`; the recipient is the
`Original-Recipient` (the address the sender wrote) when given, else the
`Final-Recipient`. One report may mix outcomes: the failed recipients make it a
BOUNCE, else the delayed ones a DELAY, else it is a DELIVERED (success) report. A
recipient's reason is `bounce_reasons.reason_of` of its status and diagnostic; when
those say nothing recognisable, the human-readable part around its address is read.

An abuse complaint (ARF) names the complainer in `Original-Rcpt-To` (often redacted by
the large feedback loops), else in the enclosed original: Microsoft's
`X-HmXmrOriginalRecipient`, then its To/Cc. A complaint is never a bounce: the store
suppresses complainers itself. DMARC failure reports (`auth-failure`) and "not spam"
votes travel as ARF too; they name nobody, since nobody complained.
"""

from __future__ import annotations

from mailcrm.domain.bounce_reasons import SUPPRESSING, BounceReason, reason_of, refused_after_data
from mailcrm.domain.bounce_text import (
    DIAGNOSTIC_LIMIT,
    MAX_BOUNCED,
    SCAN_LIMIT,
    Judge,
    is_daemon_address,
    notice_end,
    own_addresses,
    recipient_address,
)
from mailcrm.domain.classification import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.messages import DeliveryStatus, ParsedMessage, parse_mailboxes

_UNKNOWN = (BounceReason.UNDEFINED, BounceReason.ONHOLD)
# ARF feedback types that are not a recipient's complaint (RFC 6591 auth-failure, not-spam).
_NOT_COMPLAINTS = frozenset({"auth-failure", "not-spam"})


def outcome(entry: DeliveryStatus) -> str:
    """`failed`, `delayed` or `delivered`, from the Action field, else from the status class."""
    action = entry.action or ""
    if action.startswith("fail"):
        return "failed"
    if action.startswith("delay"):
        return "delayed"
    if action.startswith(("deliver", "relay", "expand")):
        return "delivered"
    status = entry.status or ""
    if status.startswith("4"):
        return "delayed"
    if status.startswith("2"):
        return "delivered"
    return "failed"  # a report is sent because something went wrong


def _context(text: str, address: str | None, single: bool) -> str:
    """The human-readable words about `address`, or the whole notice for a lone recipient."""
    if address:
        index = text.lower().find(address)
        if index >= 0:
            return text[index + len(address) : index + len(address) + 1500]
    return text[:3000] if single else ""


def _paragraph(text: str, address: str | None) -> str:
    """The paragraph of the human-readable part that names `address` (its SMTP exchange)."""
    index = text.lower().find(address) if address else -1
    if index < 0:
        return ""
    end = text.find("\n\n", index)
    return text[index : end if end >= 0 else index + 1000]


def read_report(message: ParsedMessage, noreply: bool) -> Classification | None:
    """The classification of an RFC 3464 report that lists at least one recipient."""
    if not message.delivery_status:
        return None
    by_outcome: dict[str, list[DeliveryStatus]] = {"failed": [], "delayed": [], "delivered": []}
    for entry in message.delivery_status:
        by_outcome[outcome(entry)].append(entry)
    if by_outcome["failed"]:
        kind, label, chosen = MessageKind.BOUNCE, "RFC 3464 report", by_outcome["failed"]
    elif by_outcome["delayed"]:
        kind, label, chosen = MessageKind.DELAY, "RFC 3464 report: delayed", by_outcome["delayed"]
    else:
        kind, label, chosen = MessageKind.DELIVERED, "RFC 3464 report: delivered", by_outcome["delivered"]
    text = message.text[:SCAN_LIMIT]
    text = text[: notice_end(text.lower())]
    bounced: dict[str | None, BouncedRecipient] = {}
    failed = _failed_recipients(message) if len(chosen) == 1 else []
    for entry in chosen:
        address = recipient_address(entry.original_recipient, entry.final_recipient)
        if address is None and len(failed) == 1:
            address = failed[0]  # Final-Recipient names a mailbox path: Exim's header names the address
        if address in bounced:
            continue
        diagnostic = entry.diagnostic[:DIAGNOSTIC_LIMIT] if entry.diagnostic else None
        status = entry.status
        if kind is MessageKind.DELIVERED:
            reason = BounceReason.DELIVERED
        else:
            reason = reason_of(status, diagnostic)
            context = _context(text, address, len(chosen) == 1) if reason in _UNKNOWN else ""
            if context:
                found_status, line, found = Judge("")(context, shared=False)
                if found not in _UNKNOWN:
                    reason, status, diagnostic = found, status or found_status, diagnostic or line
            reason = refused_after_data(reason, status, f"{diagnostic or ''} {_paragraph(text, address)}")
        hard = kind is MessageKind.BOUNCE and reason in SUPPRESSING and address is not None
        bounced[address] = BouncedRecipient(address, hard, status, diagnostic, reason)
        if len(bounced) >= MAX_BOUNCED:
            break
    original = message.enclosed_message_id or (message.in_reply_to[0] if message.in_reply_to else None)
    return Classification(kind, label, tuple(bounced.values()), original, noreply)


def _microsoft_jmrp(message: ParsedMessage) -> bool:
    """Outlook.com's Junk Mail Reporting Program copy: not ARF, but as sure a complaint.

    It is a plain multipart/mixed whose subject reads "complaint about message from <ip>"
    and whose enclosed copy carries X-HmXmrOriginalRecipient, the complaining mailbox.
    """
    subject = message.subject[:200].casefold()
    return "x-hmxmroriginalrecipient" in message.enclosed_headers and subject.startswith(_JMRP_SUBJECT)


_JMRP_SUBJECT = "complaint about message from"


def _failed_recipients(message: ParsedMessage) -> list[str]:
    """The addresses of Exim's X-Failed-Recipients header, normalised."""
    value = message.headers.get("x-failed-recipients", "")[:2000]
    found = (recipient_address(part) for part in value.split(","))
    return [address for address in found if address]


def _addresses(values: list[str]) -> list[str]:
    found: list[str] = []
    for value in values:
        for mailbox in parse_mailboxes(value, "complaint", None, []):
            if mailbox.address:
                found.append(mailbox.address)
        if not found:
            address = recipient_address(value)
            if address:
                found.append(address)
    return found


def read_complaint(message: ParsedMessage, noreply: bool) -> Classification | None:
    """The classification of an ARF abuse report, or None when `message` is not one."""
    feedback = message.feedback
    jmrp = feedback is None and _microsoft_jmrp(message)
    if feedback is None and message.report_type != "feedback-report" and not jmrp:
        return None
    kind = feedback.feedback_type if feedback and feedback.feedback_type else "abuse"
    label = "Microsoft JMRP complaint" if jmrp else f"ARF feedback report: {kind}"
    original = message.enclosed_message_id
    if kind in _NOT_COMPLAINTS:  # a DMARC failure report or a "not spam" vote: nobody complained
        return Classification(MessageKind.COMPLAINT, label, (), original, noreply)
    own = own_addresses(message)
    enclosed = message.enclosed_headers
    candidates = _addresses(list(feedback.original_rcpt_to) if feedback else [])
    if not candidates:
        candidates = _addresses(
            [enclosed[name] for name in ("x-hmxmroriginalrecipient",) if name in enclosed]
        )
    if not candidates:
        candidates = _addresses([enclosed[name] for name in ("to", "cc") if name in enclosed])
    complainers: dict[str, BouncedRecipient] = {}
    for address in candidates:
        if address in own or is_daemon_address(address) or address in complainers:
            continue
        complainers[address] = BouncedRecipient(address, False, None, None, BounceReason.FEEDBACK)
    return Classification(
        MessageKind.COMPLAINT,
        label,
        tuple(complainers.values())[:MAX_BOUNCED],
        original,
        noreply,
    )
