"""Signed tokens in the web endpoint's links (`/u/TOKEN` today; tracking links later).

A token names the outbox row its email was sent from (base 36) and carries an
HMAC-SHA256 over the link's purpose, the row id and the row's customer, cut to 96 bits
(16 URL-safe characters): `3k.Ab_cDeFgHiJkLmNo`. Nobody can make a token for another
email, another customer or another purpose without the key, and a token lifted from
one email and pasted onto another row's id fails. The customer is not spelled out:
the verifier reads the row's customer from the database, so a token for a row that
does not exist names nobody.

The customer, not the address, is signed because the sender's hook knows the row and
its customer when it builds the link, and the unsubscribe applies to the person.

Keys rotate: links are signed with the current key and verified against the current
one and every old one still configured. Pure: no IO, the caller passes the keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailcrm.domain.unsubscribe import base36

UNSUBSCRIBE = "unsubscribe"

_MAC_BYTES = 12  # 96 bits: 16 base64url characters
_TOKEN = re.compile(r"([0-9a-z]{1,13})\.([A-Za-z0-9_-]{16})")
MAX_TOKEN_LENGTH = 30


@dataclass(frozen=True, slots=True)
class LinkToken:
    """A token as found in a URL: the outbox row it names and its signature (unchecked)."""

    outbox_id: int
    signature: str


def _signature(key: bytes, purpose: str, outbox_id: int, customer_id: int) -> str:
    message = f"mailcrm-link:{purpose}:{outbox_id}:{customer_id}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac).decode("ascii")


def sign(key: bytes, purpose: str, outbox_id: int, customer_id: int) -> str:
    """The token of `purpose` for the email of outbox row `outbox_id` to `customer_id`."""
    if outbox_id < 0 or customer_id < 0:
        raise ValueError("ids are never negative")
    return f"{base36(outbox_id)}.{_signature(key, purpose, outbox_id, customer_id)}"


def parse(text: str) -> LinkToken | None:
    """The token in a URL path segment, unchecked; None for anything that is not one."""
    if len(text) > MAX_TOKEN_LENGTH:
        return None
    found = _TOKEN.fullmatch(text)
    if found is None:
        return None
    return LinkToken(int(found.group(1), 36), found.group(2))


def verify(keys: Sequence[bytes], purpose: str, token: LinkToken, customer_id: int) -> bool:
    """True when `token` was made with one of `keys` for `purpose`, its row and `customer_id`.

    Every key is tried (constant time each), so the answer takes as long whichever key
    matched, or none.
    """
    found = False
    for key in keys:
        expected = _signature(key, purpose, token.outbox_id, customer_id)
        found |= hmac.compare_digest(expected, token.signature)
    return found
