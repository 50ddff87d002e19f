"""Amazon SES notifications delivered by email (SNS "AWS Notification Message").

A sender on SES can have its bounces, complaints and deliveries sent as JSON to an
email subscription instead of as DSNs: `{"notificationType":"Bounce","bounce":{
"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":...,"status":"5.1.1",
"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{...}}`, sometimes wrapped in
an SNS envelope whose `Message` holds the same JSON as an escaped string. Mail
clients and gateways fold long lines anywhere, even inside values, which breaks strict
JSON, so line breaks are removed and the fields are read with bounded patterns rather
than a JSON parser. A Bounce is a BOUNCE (its reason from
the status and diagnostic, else from SES's bounce subtype), a Complaint a COMPLAINT,
a Delivery a DELIVERED report.
"""

from __future__ import annotations

import re

from mailcrm.domain.bounce_reasons import SUPPRESSING, BounceReason, reason_of
from mailcrm.domain.bounce_text import DIAGNOSTIC_LIMIT, MAX_BOUNCED, SCAN_LIMIT, recipient_address
from mailcrm.domain.classification import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.messages import ParsedMessage, normalize_message_id

_TYPE = re.compile(r'"notificationType"\s*+:\s*+"(\w{1,40}+)"')
_SUBTYPE = re.compile(r'"bounceSubType"\s*+:\s*+"(\w{1,60}+)"')
_OBJECT = re.compile(r"\{[^{}]{0,4000}+\}")
_FIELD = {
    name: re.compile(rf'"{name}"\s*+:\s*+"((?:[^"\\]|\\.){{0,2000}}+)"')
    for name in ("emailAddress", "status", "diagnosticCode")
}
_OPENING = {
    name: re.compile(rf'"{name}"\s*+:\s*+\[')
    for name in ("bouncedRecipients", "complainedRecipients", "recipients")
}
_LIST = re.compile(r"([^\]]{0,100000}+)\]")
_HEADER_ID = re.compile(r'"name"\s*+:\s*+"message-id"\s*+,\s*+"value"\s*+:\s*+"(<[^"<>]{1,995}+>)"', re.I)
_QUOTED = re.compile(r'"([^"\s]{3,320}+)"')
# SES's bounce subtypes, for bounces whose status and diagnostic say nothing specific.
_BY_SUBTYPE = {
    "noemail": BounceReason.USERUNKNOWN,
    "mailboxfull": BounceReason.MAILBOXFULL,
    "messagetoolarge": BounceReason.MESGTOOBIG,
    "contentrejected": BounceReason.CONTENTERROR,
    "attachmentrejected": BounceReason.POLICYVIOLATION,
}
_UNKNOWN = (BounceReason.UNDEFINED, BounceReason.ONHOLD)


def _field(name: str, text: str) -> str | None:
    found = _FIELD[name].search(text)
    return found.group(1) if found else None


def read_ses(message: ParsedMessage, noreply: bool) -> Classification | None:
    """The classification of an SES notification, or None when `message` is not one."""
    head = message.text[:200].lstrip()
    if not (message.subject.startswith("AWS Notification Message") or head.startswith('{"notificationType"')):
        return None
    text = message.text[:SCAN_LIMIT]
    if '\\"notificationType\\"' in text:  # the SNS envelope's Message: JSON inside a JSON string
        text = text.replace('\\"', '"')
    text = "".join(text.splitlines())  # undo lines folded anywhere, even inside values
    kind_match = _TYPE.search(text)
    if kind_match is None:
        return None
    notification = kind_match.group(1).lower()
    original_id = _original_id(text)
    if notification == "bounce":
        subtype_match = _SUBTYPE.search(text)
        subtype = subtype_match.group(1) if subtype_match else ""
        bounced = _recipients(text, "bouncedRecipients", MessageKind.BOUNCE, subtype.lower())
        return Classification(
            MessageKind.BOUNCE, "Amazon SES bounce notification", bounced, original_id, noreply
        )
    if notification == "complaint":
        complainers = _recipients(text, "complainedRecipients", MessageKind.COMPLAINT, "")
        return Classification(
            MessageKind.COMPLAINT, "Amazon SES complaint notification", complainers, original_id, noreply
        )
    if notification == "delivery":
        delivered = _recipients(text, "recipients", MessageKind.DELIVERED, "")
        return Classification(
            MessageKind.DELIVERED, "Amazon SES delivery notification", delivered, original_id, noreply
        )
    return None


def _original_id(text: str) -> str | None:
    """The Message-ID header of the message SES sent (from `mail.headers`), when it is there."""
    found = _HEADER_ID.search(text)
    if found:
        return normalize_message_id(found.group(1))
    return None


def _objects(text: str, start: int) -> list[str]:
    """The `{...}` items of the JSON array whose '[' is just before `start`."""
    items: list[str] = []
    position = start
    while len(items) < MAX_BOUNCED:
        while position < len(text) and text[position] == " ":
            position += 1
        found = _OBJECT.match(text, position)
        if found is None:
            break
        items.append(found.group())
        position = found.end()
        while position < len(text) and text[position] == " ":
            position += 1
        if position >= len(text) or text[position] != ",":
            break
        position += 1
    return items


def _recipients(text: str, list_name: str, kind: MessageKind, subtype: str) -> tuple[BouncedRecipient, ...]:
    opening = _OPENING[list_name].search(text)
    if opening is None:
        return ()
    entries: list[tuple[str | None, str | None, str | None]] = [
        (_field("emailAddress", item), _field("status", item), _field("diagnosticCode", item))
        for item in _objects(text, opening.end())
    ]
    if not entries:  # "recipients": ["a@b.example", ...]
        found = _LIST.match(text, opening.end())
        entries = [(quoted, None, None) for quoted in _QUOTED.findall(found.group(1))] if found else []
    result: dict[str | None, BouncedRecipient] = {}
    for raw_address, status, diagnostic in entries[:MAX_BOUNCED]:
        address = recipient_address(raw_address)
        if address in result:
            continue
        if kind is MessageKind.COMPLAINT:
            reason = BounceReason.FEEDBACK
        elif kind is MessageKind.DELIVERED:
            reason = BounceReason.DELIVERED
        else:
            reason = reason_of(status, diagnostic)
            if reason in _UNKNOWN:
                reason = _BY_SUBTYPE.get(subtype, reason)
        hard = kind is MessageKind.BOUNCE and reason in SUPPRESSING and address is not None
        text_diagnostic = (
            diagnostic.partition(";")[2].strip() if diagnostic and ";" in diagnostic else diagnostic
        )
        result[address] = BouncedRecipient(
            address, hard, status, (text_diagnostic or None) and text_diagnostic[:DIAGNOSTIC_LIMIT], reason
        )
    return tuple(result.values())
