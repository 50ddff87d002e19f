"""Who wrote this message: a person, an auto-responder, a mail server or a mailing list.

Timelines, follow-up rules and address health depend on it: an out-of-office reply is
not an answer, a bounce whose reason is a permanent recipient failure marks an address
as dead (`hard`), any other failure is recorded with its reason, a delay notice or a
success report marks nothing, a complaint names its complainers. Signals are checked
strongest first: ARF complaints and RFC 3464 reports (`bounce_report`), read receipts,
plain-text bounce and delay notices (`bounce_notice`), RFC 3834 and vendor auto-reply
headers, out-of-office subjects, list headers. Why a delivery failed is judged in one
place, `bounce_reasons.reason_of`.

Every pattern applied to subject or body text is linear (possessive or bounded runs,
plain finds) and bodies are scanned only up to `SCAN_LIMIT`, so hostile text cannot
stall sync.
"""

from __future__ import annotations

import re
import unicodedata

from mailcrm.domain.bounce_json import read_ses
from mailcrm.domain.bounce_notice import read_notice
from mailcrm.domain.bounce_report import read_complaint, read_report
from mailcrm.domain.bounce_text import MAX_BOUNCED, SCAN_LIMIT
from mailcrm.domain.classification import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.messages import ParsedMessage

__all__ = [
    "MAX_BOUNCED",
    "SCAN_LIMIT",
    "BouncedRecipient",
    "Classification",
    "MessageKind",
    "classify",
    "is_noreply_address",
]


# --- no-reply senders ---------------------------------------------------------------------

_LOCAL_SEPARATORS = re.compile(r"[-_.+=]")
_DAEMON_LOCALS = frozenset({"mailerdaemon", "maildaemon", "postmaster", "mailerdeamon"})


def is_noreply_address(address: str) -> bool:
    """True for addresses nobody reads: noreply, donotreply, mailer-daemon, postmaster, bounces."""
    local = address.strip().strip("<>").rpartition("@")[0] or address
    tokens = [token for token in _LOCAL_SEPARATORS.split(local.lower()) if token]
    if not tokens:
        return False
    joined = "".join(tokens)
    if joined.startswith(("noreply", "donotreply", "donotrespond", "noresponse")):
        return True
    return joined in _DAEMON_LOCALS or tokens[0] in ("bounce", "bounces", "mailerdaemon", "postmaster")


# --- auto-replies -------------------------------------------------------------------------

# Subject openings of out-of-office and auto-reply messages, as clients write them.
_AUTO_SUBJECTS = (
    "Out of Office",
    "Out of the Office",
    "Automatic reply",
    "Auto-Reply",
    "Auto Reply",
    "Autoreply",
    "Auto-Response",
    "Auto Response",
    "Autoresponse",
    "Away from",
    "Abwesenheitsnotiz",
    "Automatische Antwort",
    "Réponse automatique",
    "Reponse automatique",
    "Absence du bureau",
    "Absent du bureau",
    "Respuesta automática",
    "Respuesta automatica",
    "Fuera de la oficina",
    "Afwezig",
    "Automatisch antwoord",
    "Risposta automatica",
    "Resposta automática",
    "Автоответ",
    "Автоматический ответ",
    "ตอบกลับอัตโนมัติ",
    "自动回复",
    "自動回覆",
    "自動回复",
    "自动答复",
    "پاسخ خودکار",
    "自動応答",
    "自動返信",
)
# Words that open many human subjects too: only with a separator after them.
_AUTO_SUBJECT_WORDS = ("Absence", "Absent")
_AUTO_SUBJECT_INSIDE = ("is out of the office", "out of office autoreply")
_SEPARATORS = (":", "-", "–", "—", "|", "]", ")")


def _subject_key(subject: str) -> str:
    text = unicodedata.normalize("NFKC", subject[:500]).casefold()
    return text.lstrip(" \t[(*")


_AUTO_KEYS = tuple((unicodedata.normalize("NFKC", phrase).casefold(), phrase) for phrase in _AUTO_SUBJECTS)
_AUTO_WORD_KEYS = tuple((phrase.casefold(), phrase) for phrase in _AUTO_SUBJECT_WORDS)


def _auto_subject(subject: str) -> str | None:
    key = _subject_key(subject)
    for prefix, phrase in _AUTO_KEYS:
        if key.startswith(prefix):
            return phrase
    for prefix, phrase in _AUTO_WORD_KEYS:
        if key.startswith(prefix):
            after = key[len(prefix) :]
            rest = after.lstrip()
            # "Absence: ...", "Absent - back Monday", but not "Absence request" or "Absent-minded".
            if not rest or rest[0] == ":" or (after[0].isspace() and rest.startswith(_SEPARATORS)):
                return phrase
    for phrase in _AUTO_SUBJECT_INSIDE:
        if phrase in key:
            return phrase
    return None


def _token(value: str | None) -> str:
    """The keyword of a header such as `Auto-Submitted: auto-replied; owner-email=...`."""
    if not value:
        return ""
    return value.partition(";")[0].strip().lower()


def _auto_headers(message: ParsedMessage) -> str | None:
    headers = message.headers
    submitted = _token(headers.get("auto-submitted"))
    if submitted and submitted != "no":
        return f"Auto-Submitted: {submitted[:40]}"
    for name, label in (
        ("x-autoreply", "X-Autoreply"),
        ("x-autorespond", "X-Autorespond"),
        ("x-autoresponder", "X-Autoresponder"),
    ):
        value = headers.get(name)
        if value is not None and _token(value) not in ("no", "false", "0"):
            return label
    if _token(headers.get("precedence")) == "auto_reply":
        return "Precedence: auto_reply"
    return None


def _list_reason(message: ParsedMessage) -> str | None:
    headers = message.headers
    if headers.get("list-id"):
        return "List-Id"
    precedence = _token(headers.get("precedence"))
    if precedence in ("bulk", "junk", "list"):
        if headers.get("list-unsubscribe"):
            return f"List-Unsubscribe, Precedence: {precedence}"
        return f"Precedence: {precedence}"
    return None


# --- the decision -------------------------------------------------------------------------


def classify(message: ParsedMessage) -> Classification:
    """Kind of `message` with the signal that decided it."""
    noreply = any(is_noreply_address(m.address) for m in message.from_ if m.address) or bool(
        message.sender and message.sender.address and is_noreply_address(message.sender.address)
    )
    replied_to = message.in_reply_to[0] if message.in_reply_to else None

    feed = read_ses(message, noreply)
    if feed is not None:
        return feed
    complaint = read_complaint(message, noreply)
    if complaint is not None:
        return complaint
    report = read_report(message, noreply)
    if report is not None:
        return report
    if message.report_type == "disposition-notification":
        original = message.enclosed_message_id or replied_to
        return Classification(MessageKind.AUTO_REPLY, "RFC 8098 read receipt", (), original, noreply)

    notice = read_notice(message, noreply, report=message.report_type == "delivery-status")
    if notice is not None:
        return notice

    original = replied_to or (message.references[-1] if message.references else None)
    header_reason = _auto_headers(message)
    list_reason = _list_reason(message)
    if header_reason is not None:
        # A list's notifications say auto-generated too; the list is the better description.
        if list_reason is not None and header_reason == "Auto-Submitted: auto-generated":
            return Classification(MessageKind.LIST, list_reason, (), None, noreply)
        return Classification(MessageKind.AUTO_REPLY, header_reason, (), original, noreply)
    phrase = _auto_subject(message.subject)
    if phrase is not None:
        return Classification(MessageKind.AUTO_REPLY, f"subject: {phrase}", (), original, noreply)
    if list_reason is not None:
        return Classification(MessageKind.LIST, list_reason, (), None, noreply)
    return Classification(MessageKind.HUMAN, "no automation signal", (), None, noreply)
