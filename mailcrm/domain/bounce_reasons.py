"""Why a delivery failed, named as the bounce-handling libraries of bulk senders name it.

One vocabulary for every place a failure is judged: a DSN or a plain-text notice found
by sync (`domain.classify`), and a 5xx/4xx reply the SMTP server gave the sender
(`domain.retry`). The names follow sisimai's reasons so that reports and the timeline
speak the language mail professionals already use.

Only a permanent failure of the recipient itself suppresses the address
(`SUPPRESSING`); everything else is recorded with its reason and left to retry
counting. Failures caused by the sender's own setup (`SENDER_SIDE`) are surfaced to the
salesperson and never blamed on the customer.
"""

from __future__ import annotations

import re
from enum import StrEnum


class BounceReason(StrEnum):
    """A named cause of a failed (or delayed) delivery; values are sisimai's reason names."""

    # The recipient address itself is gone: these suppress.
    USERUNKNOWN = "userunknown"  # no such mailbox (5.1.1, 5.1.10)
    HOSTUNKNOWN = "hostunknown"  # no such domain or host (5.1.2, NXDOMAIN)
    HASMOVED = "hasmoved"  # the mailbox moved (5.1.6)
    SUSPEND = "suspend"  # the mailbox is disabled or suspended (5.2.1)
    NOTACCEPT = "notaccept"  # the domain accepts no mail at all (null MX)
    # The recipient exists but cannot take this message now.
    MAILBOXFULL = "mailboxfull"  # over quota (5.2.2, 4.2.2)
    EXCEEDLIMIT = "exceedlimit"  # the message exceeds the mailbox's size limit (5.2.3)
    MESGTOOBIG = "mesgtoobig"  # the message exceeds the system's size limit (5.3.4)
    SYSTEMFULL = "systemfull"  # the receiving system is out of space (4.3.1)
    # The receiver refused the message or its sender.
    FILTERED = "filtered"  # refused by the recipient's own filter
    BLOCKED = "blocked"  # the sending IP is blocked (blocklist, reputation list)
    BADREPUTATION = "badreputation"  # the sender's reputation is too low
    SPAMDETECTED = "spamdetected"  # judged to be spam
    VIRUSDETECTED = "virusdetected"  # an attachment carried malware
    POLICYVIOLATION = "policyviolation"  # a local policy refused it
    CONTENTERROR = "contenterror"  # the content is malformed or refused
    AUTHFAILURE = "authfailure"  # the sender's SPF, DKIM or DMARC failed (5.7.26, 5.7.1 unauthenticated)
    REQUIREPTR = "requireptr"  # the sending IP has no reverse DNS
    NOTCOMPLIANTRFC = "notcompliantrfc"  # the message breaks RFC 5322
    REJECTED = "rejected"  # the envelope sender was refused
    NORELAYING = "norelaying"  # relaying denied
    SECURITYERROR = "securityerror"  # TLS or authentication required by the receiver
    SPEEDING = "speeding"  # rate limited
    TOOMANYCONN = "toomanyconn"  # too many connections
    # The transport gave up or broke.
    EXPIRED = "expired"  # retried until the queue lifetime ran out
    NETWORKERROR = "networkerror"  # DNS or network trouble on the way
    SYSTEMERROR = "systemerror"  # the receiving system failed
    MAILERERROR = "mailererror"  # a local delivery program failed
    SYNTAXERROR = "syntaxerror"  # an SMTP syntax error
    ONHOLD = "onhold"  # the cause could not be told apart
    UNDEFINED = "undefined"  # no status code and no recognisable wording
    # Not failures: what a report says when nothing failed.
    DELIVERED = "delivered"  # a success DSN
    FEEDBACK = "feedback"  # an abuse complaint (ARF)
    VACATION = "vacation"  # an auto-reply


# Permanent recipient failures: the only reasons that suppress an address on first sight.
SUPPRESSING = frozenset(
    {
        BounceReason.USERUNKNOWN,
        BounceReason.HOSTUNKNOWN,
        BounceReason.HASMOVED,
        BounceReason.SUSPEND,
        BounceReason.NOTACCEPT,
    }
)

# Failures caused by the sender's own setup (DNS, IP, authentication): the salesperson
# must fix them; the customer's address is fine.
SENDER_SIDE = frozenset(
    {
        BounceReason.AUTHFAILURE,
        BounceReason.BLOCKED,
        BounceReason.BADREPUTATION,
        BounceReason.REQUIREPTR,
        BounceReason.NORELAYING,
        BounceReason.SECURITYERROR,
    }
)


def suppresses(reason: BounceReason, *, permanent: bool = True) -> bool:
    """True when a failure with `reason` means: never write to this address again."""
    return permanent and reason in SUPPRESSING


def is_sender_side(reason: BounceReason) -> bool:
    """True when the sender's own setup caused the failure, not the recipient."""
    return reason in SENDER_SIDE


# --- from a status code alone -------------------------------------------------------------

# RFC 3463 enhanced status codes whose meaning is specific enough on its own.
_BY_STATUS: dict[str, BounceReason] = {
    "5.1.0": BounceReason.USERUNKNOWN,
    "5.1.1": BounceReason.USERUNKNOWN,
    "5.1.10": BounceReason.USERUNKNOWN,
    "5.1.2": BounceReason.HOSTUNKNOWN,
    "5.1.6": BounceReason.HASMOVED,
    "5.1.3": BounceReason.USERUNKNOWN,
    "5.1.7": BounceReason.REJECTED,
    "5.1.8": BounceReason.REJECTED,
    "5.2.1": BounceReason.SUSPEND,
    "5.2.2": BounceReason.MAILBOXFULL,
    "4.2.2": BounceReason.MAILBOXFULL,
    "5.2.3": BounceReason.EXCEEDLIMIT,
    "5.3.4": BounceReason.MESGTOOBIG,
    "4.3.1": BounceReason.SYSTEMFULL,
    "5.3.1": BounceReason.SYSTEMFULL,
    "4.4.7": BounceReason.EXPIRED,
    "5.4.7": BounceReason.EXPIRED,
    "5.7.26": BounceReason.AUTHFAILURE,
    "5.7.25": BounceReason.REQUIREPTR,
    "5.7.27": BounceReason.NOTACCEPT,
    "5.7.23": BounceReason.AUTHFAILURE,
    "5.7.24": BounceReason.AUTHFAILURE,
    "5.7.15": BounceReason.AUTHFAILURE,
    "5.7.28": BounceReason.SPEEDING,
    "4.7.28": BounceReason.SPEEDING,
}

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


def reason_from_status(status: str | None) -> BounceReason:
    """The reason an enhanced status code names by itself, else `UNDEFINED`.

    Codes such as 5.7.1 or 5.0.0 say little without the text beside them; use
    `domain.classify` (which reads the wording too) where a diagnostic is at hand.
    """
    if not status:
        return BounceReason.UNDEFINED
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    match = _ENHANCED.match(status)
    if match is None:
        return BounceReason.UNDEFINED
    if match.group(2) == "4" and match.group(1) == "4":
        return BounceReason.NETWORKERROR
    return BounceReason.ONHOLD


def reason_of(status: str | None, diagnostic: str | None) -> BounceReason:
    """The reason of one failure from its status code and the server's words about it.

    The single judge for DSN entries, plain-text notices and SMTP replies alike.
    """
    del diagnostic  # the wording is read once the phrase tables exist
    return reason_from_status(status)
