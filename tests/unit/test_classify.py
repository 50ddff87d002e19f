"""Classification: auto-replies, bounces, delays, list mail and no-reply senders."""

from __future__ import annotations

import re

import pytest
from scaling import FACTOR, assert_linear

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.classify import (
    BouncedRecipient,
    Classification,
    MessageKind,
    classify,
    is_noreply_address,
)
from mailcrm.domain.messages import ParsedMessage, parse_message


def _message(headers: str, body: str = "Hello\n") -> ParsedMessage:
    text = f"{headers.strip()}\n\n{body}"
    return parse_message(re.sub(r"(?<!\r)\n", "\r\n", text).encode("utf-8"))


def _report(blocks: str, *, frm: str = "MAILER-DAEMON@mx.example", original: str = "") -> ParsedMessage:
    body = (
        "--r\nContent-Type: text/plain\n\nReport.\n--r\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example\n\n{blocks}\n{original}--r--\n"
    )
    headers = (
        f"From: {frm}\nTo: alice@team.example\nSubject: Delivery Status Notification\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"'
    )
    return _message(headers, body)


@pytest.mark.parametrize(
    "address",
    [
        "noreply@x.example",
        "no-reply@x.example",
        "No_Reply@x.example",
        "no.reply@x.example",
        "noreply-alerts@x.example",
        "donotreply@x.example",
        "do-not-reply@x.example",
        "DoNotReply@x.example",
        "mailer-daemon@x.example",
        "MAILER-DAEMON@x.example",
        "postmaster@x.example",
        "bounce@x.example",
        "bounces@x.example",
        "bounces+123-abc=x.example@mail.example",
        "bounce-9f8e7d@em.example",
    ],
)
def test_noreply_addresses(address: str) -> None:
    assert is_noreply_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "reply@x.example",
        "john.noreply@x.example",
        "bouncer@x.example",
        "post@x.example",
        "daemon@x.example",
        "alice@x.example",
    ],
)
def test_people_are_not_noreply(address: str) -> None:
    assert not is_noreply_address(address)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
        ("Auto-Submitted: auto-notified; owner-email=x@y.example", "Auto-Submitted: auto-notified"),
        ("X-Autoreply: yes", "X-Autoreply"),
        ("X-Autorespond: hello", "X-Autorespond"),
        ("X-Autoresponder: 1", "X-Autoresponder"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),
    ],
)
def test_auto_reply_headers(header: str, reason: str) -> None:
    result = classify(
        _message(f"From: a@b.example\nSubject: Re: Quote\nIn-Reply-To: <q@team.example>\n{header}")
    )
    assert result == Classification(MessageKind.AUTO_REPLY, reason, (), "<q@team.example>", False)
    assert not result.is_human


@pytest.mark.parametrize(
    "header",
    ["Auto-Submitted: no", "X-Auto-Response-Suppress: All", "X-Autoreply: no", "Precedence: first-class", ""],
)
def test_headers_that_do_not_mean_automation(header: str) -> None:
    result = classify(_message(f"From: a@b.example\nSubject: Re: Quote\n{header}"))
    assert result.kind is MessageKind.HUMAN
    assert result.is_human


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Out of office plans for June",
        "How do I set an automatic reply?",
        "Absence request for Friday",
        "Absent-minded mistake in the quote",
        "Fwd: Autoreply settings",
        "Away",
    ],
)
def test_human_subjects_that_mention_auto_replies(subject: str) -> None:
    assert classify(_message(f"From: a@b.example\nSubject: {subject}")).kind is MessageKind.HUMAN


@pytest.mark.parametrize(
    "subject",
    [
        "[Out of Office] Quote",
        "AUTOMATIC REPLY: Quote",
        "Absence: back on Monday",
        "Absent - back Monday",
        "John Smith is out of the office.",
        "自動回覆：報價",
        "Автоответ: Счёт",
    ],
)
def test_auto_reply_subjects(subject: str) -> None:
    result = classify(_message(f"From: a@b.example\nSubject: {subject}"))
    assert result.kind is MessageKind.AUTO_REPLY
    assert result.reason.startswith("subject: ")


def test_list_signals() -> None:
    assert classify(_message("From: a@b.example\nList-Id: <x.lists.example>")).reason == "List-Id"
    assert classify(_message("From: a@b.example\nPrecedence: list")).kind is MessageKind.LIST
    assert classify(_message("From: a@b.example\nPrecedence: bulk")).kind is MessageKind.LIST
    # A list's notification says auto-generated; the list describes it better.
    both = classify(_message("From: a@b.example\nList-Id: <x.lists.example>\nAuto-Submitted: auto-generated"))
    assert both.kind is MessageKind.LIST
    # An out-of-office answer to list mail is still an auto-reply.
    oof = classify(_message("From: a@b.example\nList-Id: <x.lists.example>\nAuto-Submitted: auto-replied"))
    assert oof.kind is MessageKind.AUTO_REPLY
    # List-Unsubscribe alone (sales tools add it to one-to-one mail) is not list mail.
    assert classify(_message("From: a@b.example\nList-Unsubscribe: <mailto:u@b.example>")).is_human


def test_noreply_sender_flag() -> None:
    assert classify(_message("From: Billing <no-reply@b.example>")).noreply_sender
    assert not classify(_message("From: Alice <alice@b.example>")).noreply_sender


@pytest.mark.parametrize(
    ("status", "diagnostic", "hard", "reason"),
    [
        ("5.1.1", "smtp; 550 5.1.1 User unknown", True, BounceReason.USERUNKNOWN),
        # A policy refusal is recorded, not suppressed: the address itself is fine.
        ("5.7.1", "smtp; 550 5.7.1 Rejected by policy", False, BounceReason.POLICYVIOLATION),
        ("5.2.2", "smtp; 552 5.2.2 Mailbox full", False, BounceReason.MAILBOXFULL),
        ("4.4.7", "smtp; 421 4.4.7 Message expired", False, BounceReason.EXPIRED),
        ("5.0.0", "smtp; 550 Mailbox quota exceeded", False, BounceReason.MAILBOXFULL),
        ("", "smtp; 550 5.1.1 no such user", True, BounceReason.USERUNKNOWN),
        ("", "smtp; 452 4.2.2 over quota", False, BounceReason.MAILBOXFULL),
        # Nothing says why: recorded as undefined, never suppressed.
        ("", "", False, BounceReason.UNDEFINED),
    ],
)
def test_hard_and_soft_bounces(status: str, diagnostic: str, hard: bool, reason: BounceReason) -> None:
    fields = "Final-Recipient: rfc822; x@customer.example\nAction: failed\n"
    fields += f"Status: {status}\n" if status else ""
    fields += f"Diagnostic-Code: {diagnostic}\n" if diagnostic else ""
    result = classify(_report(fields))
    assert result.kind is MessageKind.BOUNCE
    assert result.bounced == (
        BouncedRecipient(
            "x@customer.example", hard, status or None, diagnostic.partition("; ")[2] or None, reason
        ),
    )


def test_report_with_failed_and_delayed_recipients_lists_only_the_failed() -> None:
    blocks = (
        "Final-Recipient: rfc822; <Gone@Customer.example>\nAction: failed\nStatus: 5.1.1\n\n"
        "Final-Recipient: rfc822; later@customer.example\nAction: delayed\nStatus: 4.4.1\n\n"
        "Original-Recipient: rfc822; alias@customer.example\nFinal-Recipient: rfc822; real@customer.example\n"
        "Action: failed\nStatus: 5.1.1\n"
    )
    result = classify(_report(blocks))
    assert [b.address for b in result.bounced] == ["gone@customer.example", "alias@customer.example"]


def test_report_kinds_without_failures() -> None:
    """A delay lists who is still being retried; a success DSN lists who got the message."""
    delayed = classify(_report("Final-Recipient: rfc822; x@c.example\nAction: delayed\nStatus: 4.4.1\n"))
    assert delayed.kind is MessageKind.DELAY
    assert [(b.address, b.hard, b.status) for b in delayed.bounced] == [("x@c.example", False, "4.4.1")]
    delivered = classify(_report("Final-Recipient: rfc822; x@c.example\nAction: delivered\nStatus: 2.0.0\n"))
    assert delivered.kind is MessageKind.DELIVERED
    assert delivered.reason == "RFC 3464 report: delivered"
    assert [(b.address, b.hard, b.reason) for b in delivered.bounced] == [
        ("x@c.example", False, BounceReason.DELIVERED)
    ]


def test_report_original_message_id_from_rfc822_headers() -> None:
    original = (
        "--r\nContent-Type: text/rfc822-headers\n\n"
        "From: alice@team.example\nMessage-ID:\n <orig@team.example>\n\n"
    )
    result = classify(
        _report("Final-Recipient: rfc822; x@c.example\nAction: failed\nStatus: 5.1.1\n", original=original)
    )
    assert result.original_message_id == "<orig@team.example>"


def test_plain_bounce_ignores_own_addresses_and_postmaster_hints() -> None:
    body = (
        "Your message to gone@customer.example could not be delivered.\n"
        "550 5.1.1 gone@customer.example: no such user\n"
        "Contact postmaster@customer.example for help. Sent by alice@team.example.\n"
    )
    message = _message(
        "From: postmaster@mx.customer.example\nTo: alice@team.example\nSubject: Undeliverable: Quote", body
    )
    result = classify(message)
    assert result.kind is MessageKind.BOUNCE
    assert [(b.address, b.hard, b.status) for b in result.bounced] == [
        ("gone@customer.example", True, "5.1.1")
    ]


def test_mail_from_a_daemon_without_failure_evidence_is_not_a_bounce() -> None:
    message = _message(
        "From: postmaster@customer.example\nSubject: New spam filter", "We changed our spam filter."
    )
    assert classify(message).kind is MessageKind.HUMAN


def test_human_message_with_bounce_like_subject_needs_evidence() -> None:
    message = _message(
        "From: bob@customer.example\nSubject: failure notice for the Q3 project", "It went badly."
    )
    assert classify(message).kind is MessageKind.HUMAN


# name: (prefix, unit, repeats): each body is about 100,000 characters of one repeated unit.
PATHOLOGICAL = {
    "letters": ("", "a", 100_000),
    "at signs": ("", "@", 100_000),
    "address-like": ("", "a@", 50_000),
    "dotted": ("", "a@a.", 25_000),
    "long locals": ("", "a" * 70 + "@b.cd ", 1300),
    "status-like": ("", "5.", 50_000),
    "digits": ("", "5", 100_000),
    "codes": ("", "550-", 25_000),
    "angle": ("", "<", 100_000),
    "newlines": ("", "\n", 100_000),
    "message-ids": ("", "Message-ID: <", 7000),
    "mixed": ("", "x@y.z 5.1.1 550 ", 6000),
    "domain": ("a@", "b.", 50_000),
}


def _hostile(name: str, subject: str, share: int = 1) -> ParsedMessage:
    """The `name` body cut to 1/`share` of its repeats, with a bounce's headers."""
    prefix, unit, repeats = PATHOLOGICAL[name]
    body = prefix + unit * (repeats // share)
    return _message(
        f"From: MAILER-DAEMON@mx.example\nTo: a@b.example\nSubject: {subject}\n"
        f"X-Failed-Recipients: {body[:4000]}",
        body,
    )


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
@pytest.mark.parametrize("subject", ["Undelivered Mail Returned to Sender", "x" * 1000, "Absence" * 1000])
def test_classification_is_fast_on_hostile_text(name: str, subject: str) -> None:
    """No pathological body makes classification more than linear (catastrophic regex
    backtracking was the risk): 8 times the text takes about 8 times as long, not 64."""
    small = _hostile(name, subject, share=FACTOR)
    large = _hostile(name, subject)
    assert_linear(lambda: classify(small), lambda: classify(large))


def test_report_whose_final_recipient_is_a_path_names_the_failed_address() -> None:
    """Exim's DSN for a local delivery names a mailbox path; X-Failed-Recipients names the address."""
    message = _message(
        "From: Mail Delivery System <Mailer-Daemon@mx.example>\nTo: alice@team.example\n"
        "X-Failed-Recipients: bob@customer.example\nSubject: Mail delivery failed\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        "--r\nContent-Type: text/plain\n\n  save to /var/mail/b/bob\n    mailbox is full\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        "Action: failed\nFinal-Recipient: rfc822;/var/mail/b/bob\nStatus: 5.0.0\n--r--\n",
    )
    result = classify(message)
    assert result.kind is MessageKind.BOUNCE
    assert [(b.address, b.hard, b.reason) for b in result.bounced] == [
        ("bob@customer.example", False, BounceReason.MAILBOXFULL)
    ]


def test_outlook_junk_mail_report_is_a_complaint() -> None:
    """Microsoft's JMRP copy is not ARF: subject and X-HmXmrOriginalRecipient mark it."""
    message = _message(
        "From: staff@hotmail.com\nTo: fbl@team.example\nSubject: complaint about message from 192.0.2.1\n"
        'Content-Type: multipart/mixed; boundary="j"',
        "--j\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n"
        "X-HmXmrOriginalRecipient: carol@hotmail.example\nFrom: alice@team.example\n"
        "To: carol@hotmail.example\nSubject: Offer\n\nHello\n--j--\n",
    )
    result = classify(message)
    assert result.kind is MessageKind.COMPLAINT
    assert [(b.address, b.hard) for b in result.bounced] == [("carol@hotmail.example", False)]
