"""What the IMAP and SMTP logins ask of an account's secret, without knowing the config file.

A login reads its password (or OAuth2 access token) at the moment it logs in, never
before, so a rotated secret is picked up at the next connection and none is kept in a
long-lived object. The shells therefore hold a `Secret`: something that knows *where*
the secret lives and reads it on demand. `mailcrm.settings.SecretRef` (an environment
variable or a file) is the one mailcrm builds; code that embeds mailcrm may pass its own.

A `Secret` holds a reference, not the value: its repr may be logged, the value it
returns must not be.
"""

from __future__ import annotations

from typing import Protocol


class Secret(Protocol):
    """Where a login's password or token is read from, when it is needed."""

    def has_secret(self) -> bool:
        """A source is configured (reading it may still fail)."""
        ...

    def resolve(self, what: str) -> str:
        """Read the secret now; `what` names the account in the error (a `SecretError`)."""
        ...


class Account(Protocol):
    """What a token provider is told about the account it is asked a token for."""

    @property
    def host(self) -> str: ...

    @property
    def username(self) -> str | None: ...

    @property
    def secret(self) -> Secret: ...
