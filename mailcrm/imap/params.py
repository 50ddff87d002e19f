"""What an `ImapClient` needs to reach and log in to one mailbox: plain typed values.

The shell does not read the configuration: the caller (the daemon, a command, a
test) builds `ImapParams` from wherever its configuration lives (`mailcrm.wiring`
cuts them from the settings). The secret stays a reference (`credentials.Secret`),
read at each login, so the repr of these parameters never shows a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailcrm.credentials import Secret
from mailcrm.netpolicy import Security

ImapAuth = Literal["login", "plain", "xoauth2"]

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ImapParams:
    """One IMAP account: server, security, login, and how long a silent server is waited for.

    ``port`` is the port actually used (993 for tls, 143 otherwise when not configured);
    ``ca_file`` names the CA certificate(s) a private server's certificate is checked
    against (None: the system CAs); ``timeout_seconds`` bounds each command's silence.
    """

    host: str
    port: int
    username: str
    secret: Secret
    security: Security = "tls"
    auth: ImapAuth = "login"
    ca_file: Path | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT
