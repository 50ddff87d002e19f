"""Bounce notices, delay notices, success reports and complaints: who is named, and whether they
are suppressed. Only the bounced recipient may ever be suppressed; nothing but a bounce is a bounce."""

from __future__ import annotations

import re

from scaling import FACTOR, assert_linear

from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.classify import MessageKind, classify
from mailcrm.domain.messages import ParsedMessage, parse_message


def _message(headers: str, body: str) -> ParsedMessage:
    text = f"{headers.strip()}\n\n{body}"
    return parse_message(re.sub(r"(?<!\r)\n", "\r\n", text).encode("utf-8"))


def _found(message: ParsedMessage) -> list[tuple[str | None, bool, str]]:
    return [(b.address, b.hard, b.reason.value) for b in classify(message).bounced]


def test_bare_mailer_daemon_sender_is_a_daemon() -> None:
    message = _message(
        "From: MAILER-DAEMON\nTo: alice@acme.example\nSubject: Undeliverable mail",
        "The following message to <gone@customer.example> was undeliverable.\n"
        "The reason for the problem:\n550 5.1.1 <gone@customer.example>... User unknown\n",
    )
    assert classify(message).kind is MessageKind.BOUNCE
    assert _found(message) == [("gone@customer.example", True, "userunknown")]


def test_sendmail_transcript_names_the_recipient_never_the_sender() -> None:
    message = _message(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mail.acme.example>\nTo: alice@acme.example\n"
        "Subject: Returned mail: User unknown",
        "   ----- Transcript of session follows -----\n... while talking to mx.customer.example.:\n"
        ">>> MAIL From:<alice.sales@acme.example>\n<<< 250 2.1.0 Sender ok\n"
        ">>> RCPT To:<gone@customer.example>\n<<< 550 5.1.1 <gone@customer.example>... User unknown\n"
        "550 5.1.1 <gone@customer.example>... User unknown\n",
    )
    assert _found(message) == [("gone@customer.example", True, "userunknown")]


def test_help_desk_postmaster_and_sender_addresses_are_never_suppressed() -> None:
    message = _message(
        "From: postmaster@mx.customer.example\nTo: alice@acme.example\nSubject: Undeliverable: Quote",
        "Your message to gone@customer.example couldn't be delivered.\n"
        "550 5.1.1 gone@customer.example: no such user\n"
        "Questions? Contact helpdesk@customer.example or write to it-team@customer.example.\n"
        "Sent by alice@acme.example; see https://help.customer.example/x@y.example for details.\n",
    )
    assert _found(message) == [("gone@customer.example", True, "userunknown")]


def test_lotus_domino_notice() -> None:
    message = _message(
        "From: Postmaster@notes.customer.example\nTo: alice@acme.example\n"
        "Subject: DELIVERY FAILURE: User Taro Yamada (taro@customer.example) not listed in Domino Directory",
        "Your message\n\n  Subject: Quote\n\nwas not delivered to:\n\n  taro@customer.example\n\nbecause:\n\n"
        "  User Taro Yamada (taro@customer.example) not listed in Domino Directory\n",
    )
    assert _found(message) == [("taro@customer.example", True, "userunknown")]


def test_exim_retry_time_not_reached_is_expired_not_suppressed() -> None:
    message = _message(
        "From: Mail Delivery System <Mailer-Daemon@mx.acme.example>\nTo: alice@acme.example\n"
        "Subject: Mail delivery failed: returning message to sender\nX-Failed-Recipients: later@down.example",
        "A message that you sent could not be delivered to one or more of its\nrecipients. "
        "This is a permanent error. The following address(es) failed:\n\n  later@down.example\n"
        "    retry time not reached for any host after a long failure period\n",
    )
    assert _found(message) == [("later@down.example", False, "expired")]


def test_plain_delay_notice_lists_the_delayed_recipient() -> None:
    message = _message(
        "From: Mail Delivery System <Mailer-Daemon@mx.acme.example>\nTo: alice@acme.example\n"
        "Subject: Warning: message 1sEgPu-0004Ab-2K delayed 24 hours",
        "A message that you sent has not yet been delivered to one or more of its\nrecipients "
        "after more than 24 hours on the queue.\n\n  later@slow.example\n"
        "    Delay reason: 452 4.2.2 Mailbox full\n\n"
        "No action is required on your part.\n",
    )
    result = classify(message)
    assert result.kind is MessageKind.DELAY
    assert _found(message) == [("later@slow.example", False, "mailboxfull")]


def test_out_of_office_quoting_a_failure_is_an_auto_reply() -> None:
    message = _message(
        "From: Anna <anna@customer.example>\nTo: alice@acme.example\nReturn-Path: <>\n"
        "Subject: Out of Office: Quote\nAuto-Submitted: auto-replied",
        "I left the company. Mail to my old address could not be delivered after March "
        "(550 5.1.1 user unknown).\n"
        "Write to sales@customer.example instead.",
    )
    assert classify(message).kind is MessageKind.AUTO_REPLY


def test_people_writing_about_bounces_stay_human() -> None:
    for headers in (
        "From: IT <postmaster@customer.example>\nSubject: Re: bounces from your domain\n"
        "In-Reply-To: <q@acme.example>",
        "From: Bob <bob@customer.example>\nSubject: Undeliverable: what does this mean?",
        "From: Bob <bob@customer.example>\nSubject: Delivery Status Notification (Failure) - help",
    ):
        message = _message(
            f"{headers}\nTo: alice@acme.example",
            "Our server said: 550 5.1.1 user unknown for gone@customer.example; it could not be delivered.",
        )
        assert classify(message).kind is MessageKind.HUMAN, headers


def _report(blocks: str, subject: str = "Delivery Status Notification") -> ParsedMessage:
    return _message(
        f"From: MAILER-DAEMON@mx.acme.example\nTo: alice@acme.example\nSubject: {subject}\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        "--r\nContent-Type: text/plain\n\nReport.\n--r\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.acme.example\n\n{blocks}\n--r--\n",
    )


def test_mixed_report_lists_failures_with_their_own_reasons() -> None:
    message = _report(
        "Final-Recipient: rfc822; gone@customer.example\nAction: failed\nStatus: 5.1.1\n\n"
        "Final-Recipient: rfc822; full@customer.example\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n\n"
        "Final-Recipient: rfc822; blocked@customer.example\nAction: failed\nStatus: 5.7.1\n"
        "Diagnostic-Code: smtp; 550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org\n\n"
        "Final-Recipient: rfc822; later@customer.example\nAction: delayed\nStatus: 4.4.1\n"
    )
    assert classify(message).kind is MessageKind.BOUNCE
    assert _found(message) == [
        ("gone@customer.example", True, "userunknown"),
        ("full@customer.example", False, "mailboxfull"),
        ("blocked@customer.example", False, "blocked"),
    ]


def test_success_report_is_delivered_not_a_bounce() -> None:
    message = _report(
        "Final-Recipient: rfc822; ok@customer.example\nAction: relayed\nStatus: 2.0.0\n",
        subject="Successful Mail Delivery Report",
    )
    assert classify(message).kind is MessageKind.DELIVERED
    assert _found(message) == [("ok@customer.example", False, "delivered")]


def _complaint(report: str, enclosed_headers: str) -> ParsedMessage:
    return _message(
        "From: Feedback Loop <fbl@isp.example>\nTo: fbl@acme.example\nSubject: FW: Spring offer\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="a"',
        "--a\nContent-Type: text/plain\n\nThis is an email abuse report.\n"
        "--a\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n{report}\n"
        f"--a\nContent-Type: message/rfc822\n\nFrom: Alice <alice@acme.example>\n{enclosed_headers}"
        "Message-ID: <offer-1@acme.example>\nSubject: Spring offer\n\nBuy now\n--a--\n",
    )


def test_arf_complaint_names_the_complainer_never_a_bounce() -> None:
    by_field = classify(_complaint("Original-Rcpt-To: <grumpy@isp.example>", "To: grumpy@isp.example\n"))
    assert by_field.kind is MessageKind.COMPLAINT
    assert [(b.address, b.hard, b.reason) for b in by_field.bounced] == [
        ("grumpy@isp.example", False, BounceReason.FEEDBACK)
    ]
    assert by_field.original_message_id == "<offer-1@acme.example>"
    # Microsoft's JMRP hides To but names the recipient in its own header.
    jmrp = classify(
        _complaint("", "X-HmXmrOriginalRecipient: <moody@hotmail.example>\nTo: undisclosed-recipients:;\n")
    )
    assert [b.address for b in jmrp.bounced] == ["moody@hotmail.example"]
    # Redacted reports name nobody, and still are complaints, never the sender.
    redacted = classify(_complaint("", ""))
    assert (redacted.kind, redacted.bounced) == (MessageKind.COMPLAINT, ())


def _ses(body: str) -> ParsedMessage:
    return _message(
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\nTo: alice@acme.example\n"
        "Subject: AWS Notification Message",
        body,
    )


def test_amazon_ses_json_notifications() -> None:
    bounce = _ses(
        '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":['
        '{"emailAddress":"gone@customer.example","status":"5.1.1",\n"diagnosticCode":"smtp; 550 5.1.1 '
        'user unknown [mx.customer.example]"},{"emailAddress":"full@customer.example","status":"5.2.2"}]},'
        '"mail":{"source":"alice@acme.example","headers":[{"name":"Message-ID","value":"<q-1@acme.example>"}]}}'
    )
    result = classify(bounce)
    assert (result.kind, result.original_message_id) == (MessageKind.BOUNCE, "<q-1@acme.example>")
    assert _found(bounce) == [
        ("gone@customer.example", True, "userunknown"),
        ("full@customer.example", False, "mailboxfull"),
    ]
    wrapped = _ses(
        '{"Type":"Notification","Message":"{\\"notificationType\\":\\"Complaint\\",\\"complaint\\":'
        '{\\"complainedRecipients\\":[{\\"emailAddress\\":\\"grumpy@customer.example\\"}]}}"}'
    )
    assert classify(wrapped).kind is MessageKind.COMPLAINT
    assert _found(wrapped) == [("grumpy@customer.example", False, "feedback")]


def test_copied_original_without_a_marker_names_only_the_bounced_recipient() -> None:
    message = _message(
        "From: MAILER-DAEMON@mx.acme.example\nTo: alice@acme.example\nSubject: Undeliverable mail",
        "Your message could not be delivered.\n\n<gone@customer.example>: 550 5.1.1 User unknown\n\n"
        "From: Alice <alice@acme.example>\nTo: gone@customer.example\nCc: boss@customer.example\n"
        "Subject: Quote\n\nHello\n",
    )
    assert _found(message) == [("gone@customer.example", True, "userunknown")]


def test_exchange_2003_lists_the_original_recipients_but_only_one_failed() -> None:
    message = _message(
        "From: System Administrator <postmaster@customer.example>\nTo: alice@acme.example\n"
        "Subject: Undeliverable: Quote",
        "Your message\n\n  To:      ok@customer.example; gone@customer.example\n  Subject: Quote\n\n"
        "did not reach the following recipient(s):\n\ngone@customer.example on 1/5/2026 10:00 AM\n"
        "    The recipient name is not recognized\n    MSEXCH:IMS:ACME:CUSTOMER:MAIL1 0 (000C05A6)\n",
    )
    assert _found(message) == [("gone@customer.example", True, "userunknown")]


def test_dmarc_failure_report_names_no_complainer() -> None:
    report = _message(
        "From: OpenDMARC Filter <opendmarc@isp.example>\nTo: dmarc@acme.example\n"
        "Subject: DMARC failure report\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="a"',
        "--a\nContent-Type: text/plain\n\nThis is an authentication failure report.\n"
        "--a\nContent-Type: message/feedback-report\n\nFeedback-Type: auth-failure\nAuth-Failure: dmarc\n"
        "--a\nContent-Type: text/rfc822-headers\n\n"
        "From: alice@acme.example\nTo: reader@isp.example\n\n--a--\n",
    )
    result = classify(report)
    assert (result.kind, result.bounced) == (MessageKind.COMPLAINT, ())


def test_a_postmaster_writing_about_codes_is_a_person() -> None:
    message = _message(
        "From: IT Team <postmaster@customer.example>\nTo: alice@acme.example\nSubject: Our new spam filter",
        "We rejected some of your mails last week with 550 5.7.1; they will be retried and we have "
        "allowed your server now.",
    )
    assert classify(message).kind is MessageKind.HUMAN


def test_a_notice_naming_thousands_of_addresses_stays_fast_and_bounded() -> None:
    def notice(count: int) -> ParsedMessage:
        listing = "".join(f"user{number}@d{number}.example\n" for number in range(count))
        return _message(
            "From: MAILER-DAEMON@mx.acme.example\nTo: alice@acme.example\nSubject: Undeliverable mail",
            listing + "\n550 5.1.1 User unknown\n",
        )

    small, large = notice(2000 // FACTOR), notice(2000)
    assert len(classify(large).bounced) == 100
    assert_linear(lambda: classify(small), lambda: classify(large))


def test_gateway_tags_before_a_notice_subject_are_ignored() -> None:
    for subject in (
        "[SPAM] Undeliverable: Quote",
        "***SPAM*** Returned mail: User unknown",
        "[EXT] Failure Notice",
    ):
        message = _message(
            "From: Mail Gateway <gateway@customer.example>\nTo: alice@acme.example\nReturn-Path: <>\n"
            f"Subject: {subject}",
            "Your message could not be delivered to gone@customer.example: 550 5.1.1 User unknown\n",
        )
        assert _found(message) == [("gone@customer.example", True, "userunknown")], subject


def test_a_server_notice_in_reply_form_from_post_master() -> None:
    """Apache James answers 'Re: <subject>' from post_master@ and shows the SMTP exchange."""
    message = _message(
        "From: post_master@vtext.example\nTo: alice@acme.example\nSubject: Re:Quote\n"
        "In-Reply-To: <q@acme.example>",
        "Error: Invalid user address\n\nError message below:\n"
        "550 - Requested action not taken: no such user here\n\n"
        "Message details:\n  MAIL FROM: alice@acme.example\n  RCPT TO: 5550100@vtext.example\n",
    )
    assert _found(message) == [("5550100@vtext.example", True, "userunknown")]
