"""Why a delivery failed, named as the bounce-handling libraries of bulk senders name it.

One vocabulary for every place a failure is judged: a DSN or a plain-text notice found
by sync (`domain.classify`), and a 5xx/4xx reply the SMTP server gave the sender
(`domain.retry`). The names follow sisimai's reasons so that reports and the timeline
speak the language mail professionals already use.

Only a permanent failure of the recipient itself suppresses the address
(`SUPPRESSING`); everything else is recorded with its reason and left to retry
counting. Failures caused by the sender's own setup (`SENDER_SIDE`) are surfaced to the
salesperson and never blamed on the customer.

How a failure is judged (`reason_of`), as mail professionals do it:

1. Specific wording wins (`bounce_phrases.STRONG`, several languages): servers put
   generic codes on specific refusals ("550 5.7.1 ... blocked using Spamhaus", "554
   5.0.0 mailbox full") and sometimes wrong ones ("550 5.1.1 ... listed at Spamhaus").
2. Else a status code that names a cause by itself (5.1.1, 5.2.2, 5.7.26, ...).
3. Else generic wording (`bounce_phrases.WEAK`: "mailbox unavailable") when the code is
   generic too (5.0.0, 5.5.0, a bare 550, or none); never for 5.7.x, whose generic
   text is a policy refusal.
4. Else the code's class (`ONHOLD` when nothing can be told) or `UNDEFINED` without
   any code. Neither suppresses.

The text is NFKC-normalised, case-folded and single-spaced once, then each phrase is
one substring test: linear, whatever the input.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from mailcrm.domain import bounce_phrases


class BounceReason(StrEnum):
    """A named cause of a failed (or delayed) delivery; values are sisimai's reason names."""

    # The recipient address itself is gone: these suppress.
    USERUNKNOWN = "userunknown"  # no such mailbox (5.1.1, 5.1.10)
    HOSTUNKNOWN = "hostunknown"  # no such domain or host (5.1.2, NXDOMAIN)
    HASMOVED = "hasmoved"  # the mailbox moved (5.1.6)
    SUSPEND = "suspend"  # the mailbox is disabled or suspended ("mailbox disabled", 5.7.13)
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

# RFC 3463 / RFC 5248 enhanced status codes whose meaning is specific enough on its own,
# plus the large providers' extended ones (Microsoft 365's 5.7.5xx-7xx, 5.4.3xx).
_BY_STATUS: dict[str, BounceReason] = {
    "5.1.0": BounceReason.USERUNKNOWN,
    "5.1.1": BounceReason.USERUNKNOWN,
    "5.1.2": BounceReason.HOSTUNKNOWN,
    "5.1.3": BounceReason.USERUNKNOWN,
    "5.1.4": BounceReason.SYSTEMERROR,
    "5.1.6": BounceReason.HASMOVED,
    "5.1.7": BounceReason.REJECTED,
    "5.1.8": BounceReason.REJECTED,
    "5.1.10": BounceReason.USERUNKNOWN,
    "5.2.0": BounceReason.FILTERED,  # sisimai's reading: refused by the recipient's settings
    "5.2.1": BounceReason.FILTERED,  # "mailbox disabled" wording (Gmail, Yahoo) is SUSPEND
    "5.2.2": BounceReason.MAILBOXFULL,
    "5.2.3": BounceReason.EXCEEDLIMIT,
    "5.2.4": BounceReason.SYSTEMERROR,
    "5.3.0": BounceReason.SYSTEMERROR,
    "5.3.1": BounceReason.SYSTEMFULL,
    "5.3.2": BounceReason.SYSTEMERROR,
    "5.3.4": BounceReason.MESGTOOBIG,
    "5.3.5": BounceReason.SYSTEMERROR,
    "5.4.1": BounceReason.NETWORKERROR,
    "5.4.2": BounceReason.NETWORKERROR,
    "5.4.3": BounceReason.SYSTEMERROR,
    "5.4.4": BounceReason.HOSTUNKNOWN,
    "5.4.6": BounceReason.NETWORKERROR,
    "5.4.7": BounceReason.EXPIRED,
    "5.4.300": BounceReason.EXPIRED,
    "5.4.310": BounceReason.HOSTUNKNOWN,
    "5.4.312": BounceReason.HOSTUNKNOWN,
    "5.4.316": BounceReason.NETWORKERROR,
    "5.5.1": BounceReason.SYNTAXERROR,
    "5.5.2": BounceReason.SYNTAXERROR,
    "5.5.3": BounceReason.SYNTAXERROR,
    "5.5.4": BounceReason.SYNTAXERROR,
    "5.5.5": BounceReason.SYNTAXERROR,
    "5.6.0": BounceReason.CONTENTERROR,
    "5.6.1": BounceReason.CONTENTERROR,
    "5.6.2": BounceReason.CONTENTERROR,
    "5.6.3": BounceReason.CONTENTERROR,
    "5.6.5": BounceReason.CONTENTERROR,
    "5.7.2": BounceReason.POLICYVIOLATION,
    "5.7.3": BounceReason.SECURITYERROR,
    "5.7.4": BounceReason.SECURITYERROR,
    "5.7.5": BounceReason.SECURITYERROR,
    "5.7.6": BounceReason.SECURITYERROR,
    "5.7.7": BounceReason.SECURITYERROR,
    "5.7.8": BounceReason.SECURITYERROR,
    "5.7.9": BounceReason.SECURITYERROR,
    "5.7.10": BounceReason.SECURITYERROR,
    "5.7.11": BounceReason.SECURITYERROR,
    "5.7.13": BounceReason.SUSPEND,  # user account disabled (RFC 5248)
    "5.7.14": BounceReason.SECURITYERROR,
    "5.7.15": BounceReason.POLICYVIOLATION,  # priority too low (RFC 6710)
    "5.7.16": BounceReason.MESGTOOBIG,
    "5.7.17": BounceReason.HASMOVED,  # mailbox owner has changed (RFC 7293)
    "5.7.18": BounceReason.HASMOVED,  # domain owner has changed (RFC 7293)
    "5.7.20": BounceReason.AUTHFAILURE,  # no passing DKIM signature (RFC 7372)
    "5.7.21": BounceReason.AUTHFAILURE,
    "5.7.22": BounceReason.AUTHFAILURE,
    "5.7.23": BounceReason.AUTHFAILURE,  # SPF validation failed
    "5.7.24": BounceReason.AUTHFAILURE,
    "5.7.25": BounceReason.REQUIREPTR,  # reverse DNS validation failed
    "5.7.26": BounceReason.AUTHFAILURE,  # multiple authentication checks failed
    "5.7.27": BounceReason.REJECTED,  # the *sender* address has a null MX (RFC 7505)
    "5.7.28": BounceReason.SPEEDING,  # mail flood detected
    "5.7.29": BounceReason.AUTHFAILURE,  # ARC validation failure
    "5.7.30": BounceReason.SECURITYERROR,  # REQUIRETLS needed
    "5.7.57": BounceReason.SECURITYERROR,
    "5.7.509": BounceReason.AUTHFAILURE,  # Microsoft: DMARC reject
    "4.2.2": BounceReason.MAILBOXFULL,
    "4.2.3": BounceReason.EXCEEDLIMIT,
    "4.3.1": BounceReason.SYSTEMFULL,
    "4.3.2": BounceReason.SYSTEMERROR,
    "4.4.7": BounceReason.EXPIRED,
    "4.7.28": BounceReason.SPEEDING,
    "4.7.26": BounceReason.AUTHFAILURE,
}
# Basic SMTP replies that mean one thing (RFC 5321 section 4.2.3).
_BY_BASIC: dict[str, BounceReason] = {
    "552": BounceReason.MAILBOXFULL,  # exceeded storage allocation
    "452": BounceReason.SYSTEMFULL,  # insufficient system storage
    "421": BounceReason.TOOMANYCONN,
    "521": BounceReason.NOTACCEPT,  # RFC 7504: this host does not accept mail
    "556": BounceReason.NOTACCEPT,  # RFC 7504: the domain does not accept mail
}
# Codes that say nothing without their words: generic wording may decide for them.
_GENERIC = frozenset({"5.0.0", "4.0.0", "5.5.0", "5.1.9", "5.4.0", "5.3.3", "4.2.0"})
_BY_CLASS: dict[str, BounceReason] = {
    "1": BounceReason.ONHOLD,
    "2": BounceReason.ONHOLD,
    "3": BounceReason.SYSTEMERROR,
    "4": BounceReason.NETWORKERROR,
    "5": BounceReason.SYNTAXERROR,
    "6": BounceReason.CONTENTERROR,
    "7": BounceReason.POLICYVIOLATION,
}
_MICROSOFT_BLOCKS = re.compile(r"^5\.7\.(?:5\d\d|6\d\d|7\d\d)$")

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_ENHANCED_IN_TEXT = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w])")
_BASIC_IN_TEXT = re.compile(r"(?<![\w.#-])([245][0-5]\d)(?![\w.])")


def reason_from_status(status: str | None) -> BounceReason:
    """The reason an enhanced (or basic) status code names by itself, else `ONHOLD`/`UNDEFINED`.

    Codes such as 5.7.1 or 5.0.0 say little without the text beside them: `reason_of`
    reads the wording too and should be used where a diagnostic is at hand.
    """
    if not status:
        return BounceReason.UNDEFINED
    found = _BY_STATUS.get(status) or _BY_BASIC.get(status)
    if found is not None:
        return found
    if _MICROSOFT_BLOCKS.match(status):
        return BounceReason.BLOCKED
    match = _ENHANCED.match(status)
    if match is None:
        return BounceReason.ONHOLD if status[:1] in ("4", "5") else BounceReason.UNDEFINED
    if status in _GENERIC or match.group(2) in ("0", "1", "2"):
        return BounceReason.ONHOLD
    if match.group(1) == "4" and match.group(2) != "4":
        return BounceReason.ONHOLD  # a temporary refusal says too little about its cause
    return _BY_CLASS.get(match.group(2), BounceReason.ONHOLD)


# --- from the wording ---------------------------------------------------------------------

_STRONG = tuple((BounceReason(name), phrases) for name, phrases in bounce_phrases.STRONG)
_WEAK = tuple((BounceReason(name), phrases) for name, phrases in bounce_phrases.WEAK)
_SPACES = re.compile(r"\s+")
TEXT_LIMIT = 4000  # characters of a diagnostic read


def normalize_text(text: str) -> str:
    """The form phrases are written in: NFKC, case-folded, single-spaced, padded with spaces."""
    folded = unicodedata.normalize("NFKC", text[:TEXT_LIMIT]).casefold()
    return f" {_SPACES.sub(' ', folded).strip()} "


def _phrase_reason(text: str, table: tuple[tuple[BounceReason, tuple[str, ...]], ...]) -> BounceReason | None:
    for reason, phrases in table:
        for phrase in phrases:
            if phrase in text:
                return reason
    return None


def status_in_text(text: str) -> str | None:
    """The first enhanced status code in `text`, else the first basic SMTP reply code."""
    found = _ENHANCED_IN_TEXT.search(text[:TEXT_LIMIT])
    if found is not None:
        return found.group()
    basic = _BASIC_IN_TEXT.search(text[:TEXT_LIMIT])
    return basic.group() if basic is not None else None


def reason_of(status: str | None, diagnostic: str | None) -> BounceReason:
    """The reason of one failure from its status code and the server's words about it.

    The single judge for DSN entries, plain-text notices and SMTP replies alike, e.g.
    `reason_of("5.7.1", "550 5.7.26 Unauthenticated email ... DMARC policy")` is
    `AUTHFAILURE` and `reason_of(None, "552 5.2.2 mailbox full")` is `MAILBOXFULL`.
    """
    text = normalize_text(diagnostic) if diagnostic else ""
    reason, code = _judge(status, text)
    return refused_after_data(reason, code, text)


def refused_after_data(reason: BounceReason, status: str | None, context: str) -> BounceReason:
    """A suppressing reason the SMTP dialogue shows was not about the recipient's address.

    * Refused at MAIL FROM (Exim's "SMTP error ... after MAIL FROM:", Postfix's "in reply
      to MAIL FROM command"): the server judged the sender, before it saw any recipient;
      "550 5.1.7 No such domain" there names the sender's domain. Rejected, not suppressed.
    * An "unknown user" answer to the message's content (after DATA) is the recipient's
      filter: Japanese carriers and content filters answer "550 Unknown user" at the end
      of DATA for mail their user's settings refuse; the address exists. Only wording
      counts here: a 5.1.x status says the address is unknown whenever it is given.
    """
    if reason in SUPPRESSING and any(marker in context.casefold() for marker in _AT_MAIL_FROM):
        return BounceReason.REJECTED
    if reason is not BounceReason.USERUNKNOWN or (status or "")[1:4] == ".1.":
        return reason
    lowered = context.casefold()
    if any(marker in lowered for marker in _AFTER_DATA) and any(word in lowered for word in _GENERIC_UNKNOWN):
        return BounceReason.FILTERED
    return reason


_AFTER_DATA = ("end of data", "after data", "data command", "after end of message")
_AT_MAIL_FROM = ("after mail from", "in reply to mail from")
# RFC 3463 X.1.7 / X.1.8: the sender's address is bad. Whatever else the reply says
# ("no such domain", "address rejected") is about the sender, not the recipient.
_SENDER_ADDRESS_STATUS = frozenset({"5.1.7", "5.1.8", "4.1.7", "4.1.8"})
# The generic wordings filters reuse; a provider's own ("this user doesn't have a ...
# account") still means the address is gone.
_GENERIC_UNKNOWN = ("unknown user", "user unknown", "no such user", "unknown recipient", "recipient unknown")


def _judge(status: str | None, text: str) -> tuple[BounceReason, str | None]:
    code = status or (status_in_text(text) if text else None)
    in_text = status_in_text(text) if text and status else None
    if in_text and in_text != code and _BY_STATUS.get(in_text) and not _BY_STATUS.get(code or ""):
        code = in_text  # 'Status: 5.0.0' beside '550 5.1.1 ...': the diagnostic is more precise
    if text:
        strong = _phrase_reason(text, _STRONG)
        if strong is not None and (code not in _SENDER_ADDRESS_STATUS or strong in SENDER_SIDE):
            return strong, code
    if code in _SENDER_ADDRESS_STATUS:
        return BounceReason.REJECTED, code
    by_code = reason_from_status(code)
    if by_code not in (BounceReason.ONHOLD, BounceReason.UNDEFINED):
        return by_code, code
    if text and not (code or "").startswith(("5.7.", "4.7.")):
        weak = _phrase_reason(text, _WEAK)
        if weak is not None:
            return weak, code
    return by_code, code
