"""The password policy, checked before a password is hashed.

Following NIST SP 800-63B: length is what matters, not character classes. A password
is normalised to Unicode NFKC first (the same text typed on two keyboards hashes the
same), must hold at least `MIN_LENGTH` characters, at most `MAX_LENGTH` (so hashing
cannot be made arbitrarily expensive), must not be the account's email address or its
local part, and must not be one character repeated.
"""

from __future__ import annotations

import unicodedata

MIN_LENGTH = 12
MAX_LENGTH = 1024


def normalize_password(password: str) -> str:
    """The form that is hashed and verified: NFKC, so composed and decomposed input agree."""
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, email: str) -> str | None:
    """Why `password` is not acceptable for the account `email`, or None if it is."""
    text = normalize_password(password)
    if len(text) < MIN_LENGTH:
        return f"too short: use at least {MIN_LENGTH} characters (a few words make a good one)"
    if len(text) > MAX_LENGTH:
        return f"too long: use at most {MAX_LENGTH} characters"
    folded = text.casefold()
    local = email.rpartition("@")[0].casefold()
    if folded in {email.casefold(), local}:
        return "it is the account's email address: choose something else"
    if len(set(text)) == 1:
        return "it repeats one character: choose something less guessable"
    return None
