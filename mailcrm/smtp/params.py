"""What an `SmtpPool` needs for one sending account: plain typed values.

The shell does not read the configuration: the caller builds `SmtpParams` from
wherever its configuration lives (`mailcrm.wiring` cuts them from the settings). The
secret stays a reference (`credentials.Secret`), read at each login, so the repr of
these parameters never shows a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailcrm.credentials import Secret
from mailcrm.netpolicy import Security

SmtpAuth = Literal["login", "plain", "xoauth2"]

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class SmtpParams:
    """One SMTP account: server, security, login, and the limits its pool keeps.

    ``port`` is the port actually used; ``username`` None sends without AUTH; ``auth``
    None lets the server's best password mechanism be picked. ``max_connections``
    bounds the pool, ``per_minute`` spaces its transactions and ``per_day`` is the
    sender's daily cap (None: no limit).
    """

    host: str
    port: int
    secret: Secret
    security: Security = "tls"
    username: str | None = None
    auth: SmtpAuth | None = None
    ca_file: Path | None = None
    max_connections: int = 4
    per_minute: int | None = None
    per_day: int | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT
