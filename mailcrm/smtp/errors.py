"""The sender's SMTP exceptions: what leaves the SMTP shell instead of aiosmtplib's.

All of them sit under `SmtpError`, itself a `MailcrmError`, like the IMAP shell's
`ImapError`: one root for every error mailcrm raises. The sender catches each of them
around the one SMTP transaction it runs, so none of them reaches the CLI.
"""

from __future__ import annotations

import re

from mailcrm.domain.retry import SmtpOutcome
from mailcrm.errors import MailcrmError

_ENCRYPTION_WORDS = re.compile(r"starttls|\btls\b|\bssl\b|encrypt", re.IGNORECASE)


def wants_encryption(code: int | None, text: str) -> bool:
    """A reply saying "not in the clear": 538 / 5.7.11 (RFC 4954), or 530 asking for STARTTLS first."""
    if code == 538 or text.lstrip().startswith("5.7.11"):
        return True
    return code == 530 and _ENCRYPTION_WORDS.search(text) is not None


class SmtpError(MailcrmError):
    """Root of every error raised by `mailcrm.smtp`."""


class SmtpSendError(SmtpError):
    """A send did not end with 250; `outcome` says where and why."""

    def __init__(self, outcome: SmtpOutcome) -> None:
        super().__init__(outcome.describe())
        self.outcome = outcome


class SmtpConfigError(SmtpSendError):
    """The account's settings cannot work with its server, whatever the message: `plain` to a
    remote host, or a server that takes AUTH only over TLS. Retrying cannot help until the
    configuration changes, so the sender pauses the account (`CONFIG_PAUSE_SECONDS`) and
    keeps its emails waiting, unattempted, instead of spending their retries."""


class Utf8NotOffered(SmtpError):
    """An address has a non-ASCII local part and the server does not offer SMTPUTF8 (RFC 6531).

    Raised before MAIL FROM, so nothing was sent and the connection stays usable; the
    email fails alone (no retry can help on this server, and the address is not at fault).
    """

    def __init__(self, address: str, where: str) -> None:
        super().__init__(
            f"the address {address} has a non-ASCII local part and needs SMTPUTF8, which {where} "
            "does not offer; send through a server that does, or use an ASCII address for this customer"
        )
        self.address = address


class SendAborted(SmtpError):
    """`before_dot` declined (the row is no longer ours): the transaction was dropped unsent."""
