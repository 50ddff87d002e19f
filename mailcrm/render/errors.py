"""The errors of rendering: TemplateError for callers, _LimitError inside the sandbox."""

from __future__ import annotations

from mailcrm.errors import MailcrmError


class TemplateError(MailcrmError):
    """A template cannot be compiled or rendered; the message names the file and line."""

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.template = template
        self.path = path
        self.line = line
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(where + message, hint=hint)


class _LimitError(Exception):
    """A template exceeded a resource limit (turned into TemplateError with its location)."""
