"""What a sender is configured with: its sending policy and the accounts it sends through.

The entry points (the daemon, the demo, a child sender process) cut these slices out
of the configuration file's model (`sharing.sender_config`); the sender
sees nothing else of it, so a change elsewhere in the file cannot reach sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from mailcrm.domain.retry import RetryPolicy
from mailcrm.settings import SalespersonSettings, SendingSettings


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """The sending policy, the salespeople (identity, SMTP and IMAP accounts) by address,
    the planning grace applied again at send time, and the language and timezone of
    customers who have none."""

    sending: SendingSettings
    salespeople: Mapping[str, SalespersonSettings]
    grace: timedelta
    language: str
    timezone: str

    @classmethod
    def of(
        cls,
        sending: SendingSettings,
        salespeople: Iterable[SalespersonSettings],
        *,
        grace: timedelta,
        language: str,
        timezone: str,
    ) -> SenderConfig:
        """Index the salespeople by their (normalized) address."""
        people = MappingProxyType({person.email: person for person in salespeople})
        return cls(sending, people, grace, language, timezone)

    def salesperson(self, email: str | None) -> SalespersonSettings | None:
        """The salesperson sending as `email`, if one is configured."""
        return self.salespeople.get(email.strip().lower()) if email else None

    def retry_policy(self) -> RetryPolicy:
        """Backoff and deadline of retried rows."""
        sending = self.sending
        return RetryPolicy(
            base_seconds=sending.retry_base_seconds,
            max_seconds=sending.retry_max_seconds,
            deadline=sending.retry_deadline,
        )
