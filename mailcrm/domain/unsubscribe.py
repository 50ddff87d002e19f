"""Unsubscribe requests that arrive by mail: the signed token in the List-Unsubscribe mailto.

Every automated email carries `List-Unsubscribe: <mailto:OWNER?subject=unsubscribe-TOKEN>`.
A mail client that offers "unsubscribe" sends a message to the owner with that subject;
sync finds the token in the subject (or the first body line, for clients that move it)
and suppresses the address the token was made for, at once.

The token names the outbox row (base 36) and carries an HMAC-SHA256 over the row id and
the recipient address, cut to 96 bits (16 URL-safe characters): short enough for a
subject, and nobody can make a token for another row or address without the key. The
address is not spelled out in the token: the verifier tries the addresses of the row's
customer, so a forwarded or forged request names nobody but the one it was made for,
and a token for a row that does not exist names nobody at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

SUBJECT_PREFIX = "unsubscribe-"
_MAC_BYTES = 12  # 96 bits: 16 base64url characters
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(
    r"(?<![\w-])unsubscribe-([0-9a-z]{1,13})\.([A-Za-z0-9_-]{16})(?![A-Za-z0-9_-])", re.IGNORECASE
)
_SCAN = 2000  # characters of a subject or line searched


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    """A token as found in a message: the outbox row it names and its signature (unchecked)."""

    outbox_id: int
    signature: str


def base36(value: int) -> str:
    """A row id in lower-case base 36: the short, URL- and subject-safe form tokens carry."""
    digits = []
    while True:
        value, rest = divmod(value, 36)
        digits.append(_DIGITS[rest])
        if value == 0:
            return "".join(reversed(digits))


def _signature(key: bytes, outbox_id: int, address: str) -> str:
    message = f"mailcrm-unsubscribe:{outbox_id}:{address.strip().lower()}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac).decode("ascii")


def sign(key: bytes, outbox_id: int, address: str) -> str:
    """The token for the email of outbox row `outbox_id` to `address`."""
    if outbox_id < 0:
        raise ValueError("an outbox id is never negative")
    return f"{base36(outbox_id)}.{_signature(key, outbox_id, address)}"


def mailto(owner: str, token: str) -> str:
    """The RFC 2369 mailto: the request reaches the owner's mailbox, where sync reads it."""
    return f"mailto:{owner}?subject={SUBJECT_PREFIX}{token}"


def find(texts: Iterable[str | None]) -> UnsubscribeToken | None:
    """The first token in `texts` (the subject, then the first body line), unchecked."""
    for text in texts:
        if not text:
            continue
        found = _TOKEN.search(text[:_SCAN])
        if found is not None:
            return UnsubscribeToken(int(found.group(1).lower(), 36), found.group(2))
    return None


def verify(key: bytes, token: UnsubscribeToken, address: str) -> bool:
    """True when `token` was made with `key` for its row and `address` (constant time)."""
    return hmac.compare_digest(_signature(key, token.outbox_id, address), token.signature)


def signed_for(key: bytes, token: UnsubscribeToken, addresses: Iterable[str]) -> str | None:
    """Which of `addresses` (the row's customer's) the token was made for, if any."""
    for address in addresses:
        if verify(key, token, address):
            return address
    return None
