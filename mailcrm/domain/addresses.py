"""Email address normalisation: one spelling per mailbox, so lookups are exact matches.

Addresses are stored lower-case with the domain in IDNA (ASCII) form. Plain ASCII
addresses take a fast path; anything else goes through `email_validator`, whose
messages say precisely what is wrong.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from mailcrm.errors import ValidationError

# Conservative: whatever matches is certainly valid (RFC 5321 dot-atom, LDH labels, alpha TLD).
_FAST = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_MAX_LENGTH = 254


class InvalidAddress(ValidationError):
    """The text is not a usable email address."""


@lru_cache(maxsize=65536)
def normalize_address(raw: str) -> str:
    """Return the canonical form of `raw` or raise `InvalidAddress` saying why."""
    text = raw.strip()
    lowered = text.lower()
    if len(lowered) <= _MAX_LENGTH and _FAST.fullmatch(lowered):
        return lowered
    if not text:
        raise InvalidAddress("empty email address")
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"invalid email address {text!r}: {exc}") from None
    local, _, _ = result.normalized.rpartition("@")
    return f"{local.lower()}@{result.ascii_domain.lower()}"


def needs_smtputf8(address: str) -> bool:
    """A non-ASCII local part (`üser@example.org`): deliverable only through an SMTP server
    offering SMTPUTF8 (RFC 6531); the domain is already ASCII (IDNA) once normalised."""
    return not address.rpartition("@")[0].isascii()


def smtputf8_note(address: str) -> str | None:
    """The warning an import or `customers add` gives for such an address, else None."""
    if not needs_smtputf8(address):
        return None
    return (
        f"{address} has a non-ASCII local part: it is kept, but emails to it go out only "
        "through an SMTP server that offers SMTPUTF8 (elsewhere they fail with that reason)"
    )


def domain_of(address: str) -> str:
    """The domain part of a normalised address."""
    return address.rpartition("@")[2]


def normalize_domain(raw: str) -> str:
    """Canonical (lower-case IDNA) form of a bare domain such as `acme.co.th`."""
    text = raw.strip().lower().rstrip(".")
    if text.startswith("@"):
        text = text[1:]
    try:
        probe = normalize_address(f"x@{text}")
    except InvalidAddress:
        raise InvalidAddress(f"invalid domain {raw!r}") from None
    return domain_of(probe)
