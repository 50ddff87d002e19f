"""The links emails carry to the web endpoint, and the check of a link that comes back.

`Links.unsubscribe_url` is the sender's `unsubscribe_url` hook (`Sender(unsubscribe_url=...)`,
wired by the daemon): `BASE_URL/u/TOKEN`, the token signed for the row and its customer
(`domain.signed_links`). The sender puts it in List-Unsubscribe beside the mailto and
shows it in the body; with an https base URL it adds `List-Unsubscribe-Post` (RFC 8058).
"""

from __future__ import annotations

from mailcrm.domain import signed_links
from mailcrm.store.outbox import ClaimedEmail
from mailcrm.web.keys import LinkKeys

UNSUBSCRIBE_PATH = "/u/"


class Links:
    """Makes and checks the signed links of one base URL and key set."""

    def __init__(self, base_url: str, keys: LinkKeys) -> None:
        self.base_url = base_url.rstrip("/")
        self.keys = keys

    def unsubscribe_token(self, outbox_id: int, customer_id: int) -> str:
        return signed_links.sign(self.keys.current, signed_links.UNSUBSCRIBE, outbox_id, customer_id)

    def unsubscribe_url(self, row: ClaimedEmail) -> str:
        """The one-click unsubscribe URL of a claimed row's email (the sender's hook)."""
        return f"{self.base_url}{UNSUBSCRIBE_PATH}{self.unsubscribe_token(row.id, row.customer_id)}"


def verified(keys: LinkKeys, purpose: str, token: signed_links.LinkToken, customer_id: int) -> bool:
    """Whether `token` of `purpose` was signed for `customer_id` with a current or old key."""
    return signed_links.verify(keys.all, purpose, token, customer_id)
