"""One error hierarchy: every error a user can cause says where and how to fix it.

The CLI prints `str(error)` and exits 1 for any `MailcrmError`; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class MailcrmError(Exception):
    """Root of every error mailcrm raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(MailcrmError):
    """The configuration file is missing, malformed or inconsistent."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        where = path or "<config>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        prefix = f"{where}: " if path or line is not None else ""
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message, hint=hint)


class SecretError(ConfigError):
    """A secret named by reference (environment variable or file) cannot be read."""


class NotFoundError(MailcrmError):
    """A record named by the user does not exist."""


class ValidationError(MailcrmError):
    """A value given by the user (address, date, timezone, ...) is not acceptable."""


class ConflictError(MailcrmError):
    """The change would break a uniqueness rule (e.g. an address owned by another customer)."""


class DatabaseError(MailcrmError):
    """The database cannot be reached, is not migrated, or refused the change."""


class ImportFileError(MailcrmError):
    """A file given to an import command cannot be read at all (not a row problem)."""


class AuthenticationError(MailcrmError):
    """A login or API token was refused: unknown, wrong, expired, revoked or disabled.

    The message never says which, so a caller cannot learn which accounts or tokens
    exist; `reason` tells the server's own log.
    """

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class PermissionDeniedError(MailcrmError):
    """The user is known but the token's scope does not cover the action."""
