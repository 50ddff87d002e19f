"""OAuth2 (XOAUTH2) pieces shared by the IMAP and SMTP logins.

mailcrm does not run an OAuth flow itself. Without a `TokenProvider` (what
`mailcrm run` uses), the account's secret is the access token: `password_file` or
`password_env`, read again at every login, so a refresher such as `oama` or a
cron job that rewrites the file keeps the daemon logged in. Code that embeds
mailcrm may pass a provider instead; both protocols ask it the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from mailcrm.credentials import Account
from mailcrm.errors import MailcrmError

TokenProvider = Callable[[Account], Awaitable[str]]
"""Returns a fresh OAuth2 access token for the account (XOAUTH2): an `ImapParams` or an
`SmtpParams`, whose host and username say which."""


class OAuthError(MailcrmError):
    """No token could be obtained; each protocol re-raises it as its own auth error."""


async def fetch_token(provider: TokenProvider | None, account: Account, what: str, where: str) -> str:
    """Ask the provider for a token; `what` ("IMAP account bob@...") and `where` (the host) name it in errors.

    A provider's own `MailcrmError` passes through unchanged (it already says what is wrong).
    """
    if provider is None:
        if account.secret.has_secret():
            return await asyncio.to_thread(account.secret.resolve, f"{what} (OAuth2 access token)")
        raise OAuthError(
            f"{what} on {where} uses XOAUTH2 but has no access token",
            hint="point `password_file` at a file holding the access token (read at every login, so a "
            "refresher can rewrite it) or `password_env` at a variable holding it; or set `auth: login`",
        )
    try:
        return await provider(account)
    except MailcrmError:
        raise
    except Exception as exc:
        raise OAuthError(
            f"cannot get an OAuth2 token for {account.username} on {where}: {type(exc).__name__}"
        ) from exc


def xoauth2_response(user: str, token: str) -> bytes:
    """The base64 initial response of SASL XOAUTH2 (the same for IMAP and SMTP)."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


def error_detail(challenges: Sequence[bytes | str]) -> str:
    """The status of an XOAUTH2 error challenge (base64 JSON), for the error message.

    It says why the token was refused (expired, wrong scope), which the final reply does not.
    """
    for challenge in challenges:
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(challenge, validate=True).decode("utf-8", "replace")
            if decoded:
                return f" (server detail: {decoded})"
    return ""
