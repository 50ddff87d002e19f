"""Delivery reports found by sync: who a bounce, delay, success report or complaint concerns,
and what it does to the address.

One report per recipient the classifier names (`Classification.bounced`), with its
reason in the one vocabulary (`domain.bounce_reasons`). Only a failed delivery whose
reason is a permanent recipient failure suppresses the address (`hard_bounce`), and a
complaint suppresses the complainer (`complained`); every other report is recorded and
shown but suppresses nothing by itself (soft failures count towards
`sending.soft_bounce_limit`, see `domain.retry.is_soft_failure`). A failure caused by
the sender's own setup is marked `sender_side`: the salesperson must fix it, the
customer's address is fine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mailcrm.domain.bounce_reasons import BounceReason, is_sender_side, reason_of, suppresses
from mailcrm.domain.classify import BouncedRecipient, Classification, MessageKind

REPORT_EVENTS: Mapping[MessageKind, str] = {
    MessageKind.BOUNCE: "bounced",
    MessageKind.DELAY: "delayed",
    MessageKind.DELIVERED: "delivered",
    MessageKind.COMPLAINT: "complained",
}
"""The timeline kind of each delivery report, and the `delivery_report.kind` it is stored as."""

# Suppression reasons (`suppression.reason`) a sync writes.
HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
COMPLAINED = "complained"
UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class PlannedReport:
    """One recipient a delivery report or complaint names, with its verdict.

    `customer_id` is the customer it concerns (by address, else by the returned
    message), None when it concerns nobody the store knows. `suppress` is the
    suppression reason when the report suppresses the address now.
    """

    item: int  # index of the batch message (the report) it comes from
    message_pk: int
    kind: str  # bounced, delayed, delivered, complained
    address: str | None
    customer_id: int | None
    reason: BounceReason
    status: str | None
    diagnostic: str | None
    original_message_id: str | None
    suppress: str | None = None
    sender_side: bool = False


@dataclass(frozen=True, slots=True)
class PlannedSuppression:
    """An address to suppress, why (`reason`: hard_bounce, complained, unsubscribe, ...),
    and the failure behind it."""

    address: str
    reason: str
    bounce_reason: str | None = None
    status: str | None = None
    detail: str | None = None


def judged_reason(bounced: BouncedRecipient) -> BounceReason:
    """The recipient's reason: the classifier's, else the one judge's (`reason_of`)."""
    if bounced.reason is not BounceReason.UNDEFINED:
        return bounced.reason
    return reason_of(bounced.status, bounced.diagnostic)


def reports_of(
    index: int,
    message_pk: int,
    classification: Classification,
    customer_of: Callable[[str], int | None],
    by_original: Sequence[int],
) -> list[PlannedReport]:
    """The reports a delivery report or complaint makes, one per (recipient, customer).

    `customer_of` finds a customer by address, `by_original` are the customers of the
    returned message. A recipient no customer has is still reported (sender-side issues, later reports);
    a report naming no usable recipient (a delay notice often does not) is attached to
    the customers of the message it returns.
    """
    kind = REPORT_EVENTS.get(classification.kind)
    if kind is None:
        return []
    original = classification.original_message_id
    recipients: Sequence[BouncedRecipient] = classification.bounced or (
        BouncedRecipient(None, False, None, None),
    )
    reports: list[PlannedReport] = []
    for bounced in recipients:
        if classification.kind is MessageKind.COMPLAINT:
            reason = BounceReason.FEEDBACK
        elif classification.kind is MessageKind.DELIVERED:
            reason = BounceReason.DELIVERED
        else:
            reason = judged_reason(bounced)
        failed = classification.kind is MessageKind.BOUNCE
        suppress: str | None = None
        if bounced.address is not None:
            if failed and suppresses(reason):
                suppress = HARD_BOUNCE
            elif classification.kind is MessageKind.COMPLAINT:
                suppress = COMPLAINED
        found = customer_of(bounced.address) if bounced.address else None
        customers: Sequence[int | None] = [found] if found is not None else (by_original or [None])
        for customer in customers:
            reports.append(
                PlannedReport(
                    item=index,
                    message_pk=message_pk,
                    kind=kind,
                    address=bounced.address,
                    customer_id=customer,
                    reason=reason,
                    status=bounced.status,
                    diagnostic=bounced.diagnostic,
                    original_message_id=original,
                    suppress=suppress,
                    sender_side=failed and is_sender_side(reason),
                )
            )
    return reports


# --- telling the salesperson -----------------------------------------------------------------

_SENDER_FAILS: Mapping[BounceReason, tuple[str, str]] = {
    BounceReason.AUTHFAILURE: ("fails DKIM/DMARC", "fix your DNS (SPF, DKIM, DMARC records)"),
    BounceReason.BLOCKED: (
        "is blocked",
        "the sending server's IP address is on a blocklist: ask your mail provider to delist it",
    ),
    BounceReason.BADREPUTATION: (
        "is refused for a poor sender reputation",
        "send less to unengaged addresses and check your provider's reputation tools",
    ),
    BounceReason.REQUIREPTR: (
        "is refused: the sending IP has no reverse DNS",
        "ask your mail provider to set the PTR record of the sending IP",
    ),
    BounceReason.NORELAYING: (
        "is refused: relaying denied",
        "check the SMTP account in mailcrm.yaml (host, login)",
    ),
    BounceReason.SECURITYERROR: (
        "is refused for missing TLS or authentication",
        "check the SMTP account's security and login in mailcrm.yaml",
    ),
}


def sender_domain(address: str | None) -> str:
    """The domain of a sending address ('unknown' when there is none)."""
    return (address or "").rpartition("@")[2].lower() or "unknown"


def sender_issue_line(sending: str, reason: BounceReason, receiving: str, evidence: str | None) -> str:
    """One line for the salesperson: what fails where, the server's words, what to do."""
    fails, advice = _SENDER_FAILS.get(reason, (f"is refused ({reason.value})", "check your sending setup"))
    said = f" ({' '.join(evidence.split())[:200]})" if evidence else ""
    return f"mail from {sending} {fails} at {receiving}{said}: {advice}"


def report_summary(report: PlannedReport) -> str:
    """The timeline's one line for a report: who, what, why, and what it did."""
    who = report.address or "the recipient"
    code = f" ({report.status})" if report.status else ""
    if report.kind == "bounced":
        if report.sender_side:
            verdict = "the sender's own setup caused it; address not suppressed"
        elif report.suppress is not None:
            verdict = "address suppressed"
        else:
            verdict = "address not suppressed"
        return f"bounced: {who}: {report.reason.value}{code}; {verdict}"
    if report.kind == "complained":
        return f"complained: {who} reported the email as spam; address suppressed"
    if report.kind == "delayed":
        return f"delayed: delivery to {who} is still being retried{code}"
    return f"delivered: the receiving server confirmed delivery to {who}"
