"""The sender's SMTP exceptions: what leaves the SMTP shell instead of aiosmtplib's."""

from __future__ import annotations

from mailcrm.domain.retry import SmtpOutcome


class SmtpSendError(Exception):
    """A send did not end with 250; `outcome` says where and why."""

    def __init__(self, outcome: SmtpOutcome) -> None:
        super().__init__(outcome.describe())
        self.outcome = outcome


class SendAborted(Exception):
    """`before_dot` declined (the row is no longer ours): the transaction was dropped unsent."""
