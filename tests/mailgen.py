"""Build raw RFC 5322 messages for tests (bytes exactly as a server would store them)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr

_counter = itertools.count(1)


def message_id(domain: str = "test.example") -> str:
    return f"<m{next(_counter)}.{datetime.now(UTC).timestamp():.6f}@{domain}>"


def make(
    *,
    sender: str,
    to: str | list[str],
    subject: str = "Hello",
    body: str = "Hello there,\nthis is a test message.\n",
    name: str = "",
    cc: list[str] | None = None,
    msgid: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    date: datetime | None = None,
    headers: dict[str, str] | None = None,
    charset: str = "utf-8",
    html: str | None = None,
) -> bytes:
    """A simple text (or text + HTML) message; `msgid=""` leaves out the Message-ID."""
    text = MIMEText(body, "plain", charset)
    if html is not None:
        message: MIMEMultipart | MIMEText = MIMEMultipart("alternative")
        message.attach(text)
        message.attach(MIMEText(html, "html", charset))
    else:
        message = text
    message["From"] = formataddr((str(Header(name, charset)) if name else "", sender))
    message["To"] = ", ".join([to] if isinstance(to, str) else to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = str(Header(subject, charset))
    message["Date"] = format_datetime(date or datetime.now(UTC) - timedelta(minutes=1))
    if msgid != "":
        message["Message-ID"] = msgid or message_id()
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    for key, value in (headers or {}).items():
        message[key] = value
    return message.as_bytes()


def dsn(
    *,
    reporting_to: str,
    failed: str,
    status: str,
    original_id: str,
    action: str = "failed",
    diagnostic: str | None = None,
) -> bytes:
    """An RFC 3464 delivery status notification about `failed` (`diagnostic`: the
    Diagnostic-Code, by default one that matches a 5.1.1 or a 4.4.7 status)."""
    boundary = "dsn-boundary-42"
    if diagnostic is None:
        diagnostic = "smtp; 550 5.1.1 user unknown" if status.startswith("5") else "smtp; 451 4.4.7 try later"
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.test.example>\r\n"
        f"To: {reporting_to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {message_id('mx.test.example')}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.test.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: {reporting_to}\r\n"
        f"To: {failed}\r\n"
        f"Subject: Our offer\r\n"
        f"Message-ID: {original_id}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
