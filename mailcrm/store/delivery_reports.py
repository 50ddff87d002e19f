"""What a synced batch's delivery reports and unsubscribe requests write.

`store.mail.ingest` plans a batch with `domain.matching.plan_batch`; this module reads
what the plan needs about unsubscribe tokens (the rows they name, their customers'
addresses, the signing key), and writes the plan's delivery reports: one
`delivery_report` row per recipient (the reason a column, for reports), soft failures
counted towards `sending.soft_bounce_limit` with the sender's own (one count,
`outbox.soft_bounce_count`), a `bounced` attempt on the outbox row whose email came
back, and sender-side failures as `sender_issue` rows, once per cause. Everything runs
in the caller's transaction; the WARNING lines for new sender issues are returned, for
the caller to log once the transaction is committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from mailcrm.domain import unsubscribe
from mailcrm.domain.delivery_reports import (
    SOFT_BOUNCE,
    PlannedReport,
    PlannedSuppression,
    report_summary,
    sender_domain,
    sender_issue_line,
)
from mailcrm.domain.matching import BatchPlan, MatchPolicy, unsubscribe_token
from mailcrm.domain.messages import ParsedMessage
from mailcrm.domain.retry import is_soft_failure, too_many_soft
from mailcrm.store import keys, sender_issues
from mailcrm.store.models import DeliveryReport, EmailAddress, OutboxItem, table_of
from mailcrm.store.outbox import CANCELLED, DUE, FoundBounce, record_bounces, soft_bounce_count

_REPORT = table_of(DeliveryReport)
_ADDRESS = table_of(EmailAddress)
_OUTBOX = table_of(OutboxItem)

Resolve = Callable[[int], int]


def unsubscribe_requests(
    session: Session, messages: Iterable[ParsedMessage], team_addresses: Collection[str]
) -> dict[str, tuple[int, str] | None]:
    """Per Message-ID of an incoming unsubscribe request: the (customer, address) its token
    was signed for, or None when the token does not verify (forged, altered, unknown row).

    Reads nothing, and makes no key, for a batch without a token.
    """
    tokens: dict[str, unsubscribe.UnsubscribeToken] = {}
    for parsed in messages:
        senders = [box.address for box in parsed.from_ if box.address]
        if senders and senders[0] in team_addresses:
            continue  # our own mail quoting a token asks for nothing
        token = unsubscribe_token(parsed)
        if token is not None:
            tokens[parsed.message_id] = token
    if not tokens:
        return {}
    key = keys.signing_key(session)
    ids = sorted({token.outbox_id for token in tokens.values()})
    rows = {
        row.id: row.customer_id
        for row in session.execute(select(_OUTBOX.c.id, _OUTBOX.c.customer_id).where(_OUTBOX.c.id.in_(ids)))
    }
    addresses: dict[int, list[str]] = defaultdict(list)
    owners = sorted(set(rows.values()))
    query = select(_ADDRESS.c.customer_id, _ADDRESS.c.address).where(_ADDRESS.c.customer_id.in_(owners))
    for row in session.execute(query.order_by(_ADDRESS.c.id)):
        addresses[row.customer_id].append(row.address)
    found: dict[str, tuple[int, str] | None] = {}
    for message_id, token in tokens.items():
        customer = rows.get(token.outbox_id)
        address = None if customer is None else unsubscribe.signed_for(key, token, addresses[customer])
        found[message_id] = None if customer is None or address is None else (customer, address)
    return found


def apply_soft_limit(
    session: Session, plan: BatchPlan, policy: MatchPolicy, suppressed: Collection[str], now: datetime
) -> None:
    """Suppress an address whose soft failures in this batch reach the limit within the window.

    Counted with the sender's soft bounces (`outbox.soft_bounce_count`) plus this batch's,
    so one rule decides whatever found them. Changes `plan` in place.
    """
    counts: dict[int, int] = {}
    taken = set(suppressed) | {entry.address for entry in plan.suppressions}
    for position, report in enumerate(plan.reports):
        customer = report.customer_id
        if (
            report.kind != "bounced"
            or report.suppress is not None
            or report.sender_side
            or report.address is None
            or customer is None
            or customer < 0
            or report.address in taken
            or not is_soft_failure(report.reason, report.status)
        ):
            continue
        if customer not in counts:
            counts[customer] = soft_bounce_count(session, customer, now - policy.soft_bounce_window)
        counts[customer] += 1
        if too_many_soft(counts[customer], policy.soft_bounce_limit):
            taken.add(report.address)
            plan.reports[position] = replace(report, suppress=SOFT_BOUNCE)
            detail = f"{counts[customer]} soft bounces; last: {report.diagnostic or report.status or ''}"
            plan.suppressions.append(
                PlannedSuppression(report.address, SOFT_BOUNCE, report.reason.value, report.status, detail)
            )


def report_payload(report: PlannedReport) -> dict[str, Any]:
    """The timeline event's payload of a report (`timeline --json` shows it)."""
    return {
        "summary": report_summary(report),
        "address": report.address,
        "reason": report.reason.value,
        "status": report.status,
        "diagnostic": report.diagnostic,
        "suppressed": report.suppress is not None,
        "suppression_reason": report.suppress,
        "sender_side": report.sender_side,
        "original_message_id": report.original_message_id,
    }


def write_reports(
    session: Session,
    plan: BatchPlan,
    at: Sequence[datetime],
    *,
    customer: Resolve,
    message: Resolve,
    mailbox: str,
    now: datetime,
) -> list[str]:
    """Insert the plan's reports, attach bounces to their outbox rows and count sender
    issues; returns the WARNING lines of sender issues seen for the first time.

    `at` is each batch message's date (the report's time); `customer` and `message` turn
    the plan's provisional ids into real ones.
    """
    if not plan.reports:
        return []
    rows = [
        {
            "at": at[r.item],
            "kind": r.kind,
            "reason": r.reason.value,
            "address": r.address,
            "customer_id": None if r.customer_id is None else customer(r.customer_id),
            "message_pk": message(r.message_pk),
            "original_message_id": r.original_message_id,
            "status": r.status,
            "diagnostic": r.diagnostic,
            "suppressed": r.suppress is not None,
            "sender_side": r.sender_side,
        }
        for r in plan.reports
    ]
    session.execute(insert(_REPORT), rows)
    returned = _returned(plan.reports, mailbox)
    record_bounces(session, returned, now=now)
    _cancel_followups_of(session, returned, now)
    return _sender_issues(session, plan.reports, mailbox, now)


def _cancel_followups_of(session: Session, returned: Mapping[str, FoundBounce], now: datetime) -> int:
    """Follow-ups still waiting for an email that came back are cancelled: it reached nobody."""
    cancelled = 0
    for original, found in sorted(returned.items()):
        result = session.execute(
            update(_OUTBOX)
            .where(
                _OUTBOX.c.in_reply_to == original,
                _OUTBOX.c.state == DUE,
                _OUTBOX.c.occurrence.like("followup:%"),
            )
            .values(
                state=CANCELLED,
                skip_reason=f"bounced: the email it follows up was not delivered ({found.reason})",
                updated_at=now,
            )
        )
        cancelled += int(getattr(result, "rowcount", 0) or 0)
    return cancelled


def _bounce_text(report: PlannedReport) -> str:
    verdict = "suppressed" if report.suppress is not None else "not suppressed"
    if report.sender_side:
        verdict = "sender's setup"
    text = f"{report.status or 'no status'} {report.reason.value}, {verdict}"
    return f"{text}: {report.diagnostic}" if report.diagnostic else text


def _returned(reports: Sequence[PlannedReport], mailbox: str) -> dict[str, FoundBounce]:
    """Failed deliveries by the Message-ID they returned, so the outbox row that sent it shows
    the bounce in its history (suppressing ones first: they decide `last_error`)."""
    by_original: dict[str, dict[str | None, PlannedReport]] = defaultdict(dict)
    for report in reports:
        if report.kind == "bounced" and report.original_message_id:
            by_original[report.original_message_id].setdefault(report.address, report)
    found: dict[str, FoundBounce] = {}
    for original, unique in by_original.items():
        ordered = sorted(unique.values(), key=lambda r: r.suppress is None)
        reply = "; ".join(_bounce_text(r) for r in ordered) + f" (reported by {mailbox})"
        first = ordered[0]
        found[original] = FoundBounce(reply=reply, hard=first.suppress is not None, reason=first.reason.value)
    return found


def _sender_issues(
    session: Session, reports: Sequence[PlannedReport], mailbox: str, now: datetime
) -> list[str]:
    """One sighting per report message and (cause, receiving domain); lines for the first ones."""
    sending = sender_domain(mailbox)
    seen: dict[tuple[int, str, str], PlannedReport] = {}
    for report in reports:
        if report.sender_side:
            seen.setdefault((report.item, report.reason.value, sender_domain(report.address)), report)
    lines: list[str] = []
    for (_, cause, receiving), report in sorted(seen.items()):
        first = sender_issues.record(
            session,
            sender_domain=sending,
            cause=cause,
            receiving_domain=receiving,
            salesperson=mailbox,
            status=report.status,
            detail=report.diagnostic,
            at=now,
        )
        if first:
            evidence = report.diagnostic or report.status
            lines.append(sender_issue_line(sending, report.reason, receiving, evidence))
    return lines
