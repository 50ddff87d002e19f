"""The answer of `domain.classify`: what kind of message this is, and whom it concerns.

Kept apart from the classifier so the bounce readers (`bounce_report`, `bounce_notice`)
and the classifier can share the types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailcrm.domain.bounce_reasons import BounceReason


class MessageKind(StrEnum):
    HUMAN = "human"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"  # a failed delivery: `bounced` lists the failed recipients
    DELAY = "delay"  # a delivery still being retried: `bounced` lists the delayed recipients
    DELIVERED = "delivered"  # a success DSN: `bounced` lists the delivered recipients
    COMPLAINT = "complaint"  # an abuse report (ARF, RFC 5965): `bounced` lists the complainers
    LIST = "list"


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient a delivery report, notice or complaint concerns.

    `hard` means: suppress this address now. It is true only for a failed delivery whose
    reason is a permanent recipient failure (`bounce_reasons.SUPPRESSING`).
    """

    address: str | None  # normalised; None when the report names no usable address
    hard: bool  # suppress this address now
    status: str | None  # enhanced status code such as '5.1.1', or a basic SMTP code such as '550'
    diagnostic: str | None
    reason: BounceReason = BounceReason.UNDEFINED


@dataclass(frozen=True, slots=True)
class Classification:
    kind: MessageKind
    reason: str
    bounced: tuple[BouncedRecipient, ...] = ()
    original_message_id: str | None = None  # of the bounced or auto-answered message
    noreply_sender: bool = False

    @property
    def is_human(self) -> bool:
        return self.kind is MessageKind.HUMAN
