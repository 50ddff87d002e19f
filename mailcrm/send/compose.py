"""Turning a claimed outbox row into the bytes to send.

The template renders in the customer's language, else the owner's, else the
default, else English. The message carries the Message-ID fixed at planning,
threading headers for follow-ups, and List-Unsubscribe: always a mailto: to the
sender whose subject carries a token signed for this email and recipient
(`domain.unsubscribe`; sync honours it), plus the web endpoint's URL once a web hook
provides one (no email goes out without a way to stop the next).
`List-Unsubscribe-Post` (one-click) is written only with such an https URL: a
placeholder URL nobody serves would swallow the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mailcrm.domain import unsubscribe as unsubscribe_token
from mailcrm.domain.mime import Address, build_message
from mailcrm.render import RenderedEmail, TemplateRenderer, template_context
from mailcrm.settings import SalespersonSettings
from mailcrm.store.outbox import ClaimedEmail, Prepared

AUTO_SUBMITTED = {"Auto-Submitted": "auto-generated"}  # RFC 3834 §5: spares us out-of-office replies

UnsubscribeUrl = Callable[[ClaimedEmail], "str | None"]
_WEB = ("https://", "http://")


@dataclass(frozen=True, slots=True)
class Built:
    """A rendered, built message and what recording its `sent` needs."""

    payload: bytes
    rendered: RenderedEmail
    sender: SalespersonSettings
    recipient: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """How a recipient stops the next email: the signing key of mailto tokens, and the web
    endpoint's link hook once there is one."""

    key: bytes
    web: UnsubscribeUrl | None = None

    def links(self, row: ClaimedEmail, owner: str, recipient: str) -> tuple[str, str]:
        """(the link templates show: the web URL, else the mailto; the mailto, which
        List-Unsubscribe always carries)."""
        mailto = mailto_unsubscribe(self.key, row, owner, recipient)
        web = self.web(row) if self.web is not None else None
        return web or mailto, mailto


def mailto_unsubscribe(key: bytes, row: ClaimedEmail, owner: str, recipient: str) -> str:
    """The RFC 2369 mailto: form: a request to the owner's mailbox, which sync reads, with a
    token signed for this row and recipient (a forged one unsubscribes nobody)."""
    return unsubscribe_token.mailto(owner, unsubscribe_token.sign(key, row.id, recipient))


def languages(facts: Prepared, person: SalespersonSettings, default: str) -> list[str]:
    """The template languages to try, best first, without repeats."""
    chain = [facts.customer.language if facts.customer else None, person.language, default, "en"]
    return list(dict.fromkeys(lang for lang in chain if lang))


def build(
    row: ClaimedEmail,
    facts: Prepared,
    person: SalespersonSettings,
    now: datetime,
    *,
    renderer: TemplateRenderer,
    language: str,
    timezone: str,
    unsubscribe: str | None,
    unsubscribe_mailto: str,
) -> Built:
    """Render and build the message (CPU work: ~0.1 ms, cheaper inline than a thread hop).

    `language` and `timezone` serve customers who have none of their own.
    `unsubscribe` is the link templates show (the web URL, else the mailto);
    `unsubscribe_mailto` always goes into List-Unsubscribe.

    Raises `TemplateError` or `ValidationError`: the row fails, the batch goes on.
    """
    customer = facts.customer
    assert customer is not None and facts.recipient is not None
    extra = {"previous_subject": facts.previous_subject} if row.in_reply_to else None
    context = template_context(
        customer=customer.model_dump(),
        salesperson=person.model_dump(include={"name", "email", "language", "timezone"}),
        purchase=facts.purchase,
        extra=extra,
        unsubscribe_url=unsubscribe,
    )
    rendered = renderer.render(
        row.template,
        languages=languages(facts, person, language),
        context=context,
        timezone=customer.timezone or timezone,
    )
    payload = build_message(
        sender=Address(person.email, person.name),
        to=Address(facts.recipient, customer.name),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=row.message_id,
        date=now,
        in_reply_to=row.in_reply_to,
        references=facts.references,
        list_unsubscribe_url=unsubscribe if unsubscribe and unsubscribe.startswith(_WEB) else None,
        list_unsubscribe_mailto=unsubscribe_mailto,
        extra_headers=AUTO_SUBMITTED,
    )
    return Built(payload=payload, rendered=rendered, sender=person, recipient=facts.recipient)
