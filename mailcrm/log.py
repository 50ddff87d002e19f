"""Logging setup: plain or JSON lines, event names in `extra`, secrets and CR/LF masked.

Secrets are masked by name (an `extra` key such as `password`) and by shape (the password
of any `scheme://user:password@host` URL in a message, an extra or a traceback).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|authorization)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


# scheme://user:PASSWORD@host: the password runs to the last "@" of the URL.
_URL_PASSWORD = re.compile(r"""([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@'"]*:)[^\s'"]*@""")
MASK = "***"  # what SQLAlchemy's `render_as_string(hide_password=True)` writes (`db status`)


def mask_url(text: str) -> str:
    """Any `scheme://user:password@` in `text` with the password as `***`, as `db status` shows it."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)


def clean(value: object) -> str:
    """Render untrusted text for a log line: control characters (CR/LF, NUL) become spaces,
    a password inside a URL becomes `***`."""
    return mask_url(_CONTROL.sub(" ", str(value)))


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS or key.startswith("_"):
            continue
        if _SECRET_KEYS.search(key):
            fields[key] = "********"
        else:
            fields[key] = mask_url(value) if isinstance(value, str) else value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": clean(record.getMessage()),
        }
        payload.update(_extras(record))
        if record.exc_info:
            payload["exception"] = mask_url(self.formatException(record.exc_info))
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines: `time level logger message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        extras = " ".join(f"{k}={clean(v)}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {clean(record.getMessage())}"
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + mask_url(self.formatException(record.exc_info))
        return line


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Install one stderr handler on the `mailcrm` logger (idempotent)."""
    logger = logging.getLogger("mailcrm")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.propagate = False
