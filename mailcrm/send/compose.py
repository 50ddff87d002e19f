"""Turning a claimed outbox row into the bytes to send.

The template renders in the customer's language, else the owner's, else the
default, else English. The message carries the Message-ID fixed at planning,
threading headers for follow-ups, and List-Unsubscribe: the web endpoint when
`web.base_url` is set, else a mailto: to the sender (no email goes out without a
way to stop the next).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mailcrm.domain.mime import Address, build_message
from mailcrm.render import RenderedEmail, TemplateRenderer, template_context
from mailcrm.settings import SalespersonSettings, Settings
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


def placeholder_unsubscribe_url(base_url: str | None) -> UnsubscribeUrl:
    """`<base_url>/u/<token>` (the web endpoint replaces this hook with signed tokens), or
    without `web.base_url` a mailto: to the sender asking to unsubscribe, so no email goes
    out without a way to stop the next one."""
    base = base_url.rstrip("/") if base_url else None

    def url(row: ClaimedEmail) -> str | None:
        if base is None:
            return mailto_unsubscribe(row.sender) if row.sender else None
        token = hashlib.sha256(row.message_id.encode()).hexdigest()[:32]
        return f"{base}/u/{token}"

    return url


def mailto_unsubscribe(sender: str) -> str:
    """The RFC 2369 mailto: form: a reply the salesperson sees in their own mailbox."""
    return f"mailto:{sender}?subject=unsubscribe"


def languages(facts: Prepared, person: SalespersonSettings, settings: Settings) -> list[str]:
    """The template languages to try, best first, without repeats."""
    chain = [
        facts.customer.language if facts.customer else None,
        person.language,
        settings.defaults.language,
        "en",
    ]
    return list(dict.fromkeys(lang for lang in chain if lang))


def build(
    row: ClaimedEmail,
    facts: Prepared,
    person: SalespersonSettings,
    now: datetime,
    *,
    renderer: TemplateRenderer,
    settings: Settings,
    unsubscribe: str | None,
) -> Built:
    """Render and build the message (CPU work: ~0.1 ms, cheaper inline than a thread hop).

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
        languages=languages(facts, person, settings),
        context=context,
        timezone=customer.timezone or settings.defaults.timezone,
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
        list_unsubscribe_mailto=mailto_unsubscribe(person.email),
        extra_headers=AUTO_SUBMITTED,
    )
    return Built(payload=payload, rendered=rendered, sender=person, recipient=facts.recipient)
