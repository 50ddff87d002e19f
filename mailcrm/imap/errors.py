"""IMAP errors: each names the account or server and says whether retrying soon can help.

`retry_soon` lets the sync supervisor choose between a quick reconnect (network trouble,
timeouts) and a long pause (wrong credentials, which a retry loop would only lock out).
"""

from __future__ import annotations

from typing import ClassVar

from mailcrm.errors import MailcrmError


class ImapError(MailcrmError):
    """Root of every error raised by `mailcrm.imap`."""

    retry_soon: ClassVar[bool] = True


class ImapAuthError(ImapError):
    """The server refused the credentials (or no credentials could be obtained)."""

    retry_soon: ClassVar[bool] = False


class ImapSecurityError(ImapAuthError):
    """The account's settings would send the password unprotected (`plain` to a remote host).

    A configuration problem, not a network one: reported like a refused login (logged,
    shown by `mailboxes status`) and retried only slowly, until the settings change.
    """


class ImapConnectionError(ImapError):
    """The connection could not be made or was lost: refused, reset, TLS failure, BYE."""


class ImapTimeout(ImapError):
    """A command, the greeting or IDLE exceeded its time bound; the connection is dropped."""


class ImapProtocolError(ImapError):
    """The server answered NO or BAD, or sent something that cannot be understood."""

    retry_soon: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        server_text: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.server_text = server_text


class ImapParseError(ImapProtocolError):
    """A server response does not follow the IMAP grammar closely enough to be read."""
