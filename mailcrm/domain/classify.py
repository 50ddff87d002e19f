"""Who wrote this message: a person, an auto-responder, a mail server or a mailing list.

Timelines, follow-up rules and address health depend on it: an out-of-office reply is
not an answer, a bounce marks an address as dead (hard) or troubled (soft), a delay
notice marks nothing. Signals are checked strongest first: RFC 3464 delivery reports,
then non-standard bounce texts, RFC 3834 and vendor auto-reply headers, out-of-office
subjects, list headers.

Every pattern applied to subject or body text is linear (possessive or bounded runs,
plain finds) and bodies are scanned only up to `SCAN_LIMIT`, so hostile text cannot
stall sync.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from mailcrm.domain.addresses import InvalidAddress, normalize_address
from mailcrm.domain.bounce_reasons import BounceReason
from mailcrm.domain.messages import DeliveryStatus, ParsedMessage, normalize_message_id

SCAN_LIMIT = 64 * 1024  # characters of body text searched for bounce details
MAX_BOUNCED = 100


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


def _is_daemon(address: str | None) -> bool:
    if not address:
        return False
    tokens = _LOCAL_SEPARATORS.split(address.rpartition("@")[0].lower())
    return "".join(tokens) in _DAEMON_LOCALS


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


# --- bounces: RFC 3464 --------------------------------------------------------------------

_ENHANCED = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w.])")
_BASIC = re.compile(r"(?<![\w.#-])([45][0-5]\d)(?=[ -]|$)", re.M)
_FULL_MAILBOX = ("mailbox full", "mailbox is full", "over quota", "quota exceeded", "exceeded storage")


def _recipient(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate:
            try:
                return normalize_address(candidate.strip().strip("<>").strip())
            except InvalidAddress:
                continue
    return None


def _is_hard(status: str | None, diagnostic: str | None) -> bool:
    """5.x.x is permanent, 4.x.x transient; a full mailbox (5.2.2) clears up, so it is soft."""
    code = status or ""
    if not code and diagnostic:
        found = _ENHANCED.search(diagnostic) or _BASIC.search(diagnostic)
        code = found.group() if found else ""
    if code in ("5.2.2", "4.2.2", "552"):
        return False
    text = (diagnostic or "").lower()
    if any(phrase in text for phrase in _FULL_MAILBOX):
        return False
    return not code.startswith("4")


def _failed(entry: DeliveryStatus) -> bool:
    if entry.action is not None:
        return entry.action == "failed"
    return bool(entry.status and entry.status.startswith("5"))


def _delayed(entry: DeliveryStatus) -> bool:
    if entry.action is not None:
        return entry.action == "delayed"
    return bool(entry.status and entry.status.startswith("4"))


def _from_report(entries: tuple[DeliveryStatus, ...]) -> tuple[BouncedRecipient, ...]:
    bounced: dict[str | None, BouncedRecipient] = {}
    for entry in entries:
        if not _failed(entry):
            continue
        address = _recipient(entry.original_recipient, entry.final_recipient)
        diagnostic = entry.diagnostic[:500] if entry.diagnostic else None
        bounced.setdefault(
            address, BouncedRecipient(address, _is_hard(entry.status, diagnostic), entry.status, diagnostic)
        )
    return tuple(bounced.values())[:MAX_BOUNCED]


# --- bounces: plain-text notices (Postfix, Exim, qmail, Gmail, Exchange) ------------------

_BOUNCE_SUBJECTS = (
    "delivery status notification (failure)",
    "undelivered mail returned to sender",
    "mail delivery failed",
    "failure notice",
    "undeliverable:",
    "undeliverable mail",
    "returned mail:",
    "delivery failure",
    "delivery has failed",
    "mail delivery failure",
    "message delivery failure",
    "non remis",
    "unzustellbar",
    "nicht zustellbar",
)
_DELAY_SUBJECTS = (
    "delivery status notification (delay)",
    "delayed mail",
    "delivery delayed",
    "warning: message",
    "warning: could not send message",
    "delivery notification: delay",
    "mail delivery delayed",
)
_FAILURE_PHRASES = (
    "could not be delivered",
    "couldn't be delivered",
    "wasn't delivered",
    "delivery has failed",
    "delivery to the following recipient failed",
    "failed permanently",
    "permanent error",
    "permanent failure",
    "following address(es) failed",
    "address not found",
    "user unknown",
    "unknown user",
    "does not exist",
    "mailbox unavailable",
    "recipient address rejected",
    "wasn't able to deliver",
    "undeliverable",
    "message not delivered",
)
_DELAY_PHRASES = (
    "has been delayed",
    "delivery has been delayed",
    "will continue to try",
    "will be retried",
    "still being retried",
    "will retry",
    "has not yet been delivered",
    "not been delivered yet",
    "temporarily deferred",
)
# Where the copy of the returned message starts in the text: addresses below are the original's.
_COPY_MARKERS = (
    "------ this is a copy of the message",
    "--- below this line is a copy of the message",
    "----- original message -----",
    "------- returned message",
    "----- transcript of session follows -----",
    "original message follows",
    "\nreturn-path:",
    "\nreceived:",
    "\nmessage-id:",
)
_EMAIL_IN_TEXT = re.compile(r"(?<![\w.+=%'-])[\w.+=%'-]{1,64}+@[\w-]{1,63}+(?:\.[\w-]{1,63}+){1,10}+")
_ID_IN_TEXT = re.compile(r"(?im)^[ \t]*+message-id:[ \t]*+(<[^<>\s]{1,995}+>)")


def _code_line(text: str, start: int = 0, end: int | None = None) -> tuple[str | None, str | None]:
    """The first SMTP status in `text[start:end]` and the whole line it is on."""
    stop = len(text) if end is None else end
    found = _ENHANCED.search(text, start, stop)
    basic = _BASIC.search(text, start, stop)
    if basic is not None and (found is None or basic.start() < found.start()):
        # '550 5.1.1 ...': prefer the enhanced code on the same line.
        line_end = text.find("\n", basic.start(), stop)
        found = _ENHANCED.search(text, basic.start(), line_end if line_end >= 0 else stop) or basic
    if found is None:
        return None, None
    line_start = text.rfind("\n", 0, found.start()) + 1
    line_end = text.find("\n", found.end())
    line = text[line_start : line_end if line_end >= 0 else len(text)].strip()
    return found.group(), line[:500] or None


def _own_addresses(message: ParsedMessage) -> set[str]:
    found = {mailbox.address for mailbox in (*message.from_, *message.to, *message.cc) if mailbox.address}
    if message.sender is not None and message.sender.address:
        found.add(message.sender.address)
    return found


def _from_text(message: ParsedMessage, region: str) -> tuple[BouncedRecipient, ...]:
    own = _own_addresses(message)
    positions: dict[str, int] = {}
    failed_header = message.headers.get("x-failed-recipients", "")
    lowered = region.lower()
    for match in _EMAIL_IN_TEXT.finditer(failed_header[:8192]):
        address = _recipient(match.group())
        if address and address not in positions:
            positions[address] = lowered.find(address)
            if len(positions) >= MAX_BOUNCED:
                break
    if not positions:
        for match in _EMAIL_IN_TEXT.finditer(region):
            address = _recipient(match.group())
            if address and address not in own and not is_noreply_address(address):
                positions.setdefault(address, match.start())
            if len(positions) >= MAX_BOUNCED:
                break
    default_status, default_line = _code_line(region)
    ordered = sorted((start, address) for address, start in positions.items())
    bounced: list[BouncedRecipient] = []
    for index, (start, address) in enumerate(ordered):
        status, line = (None, None)
        if start >= 0:
            end = ordered[index + 1][0] if index + 1 < len(ordered) else len(region)
            status, line = _code_line(region, start, end)
        status, line = (status, line) if status else (default_status, default_line)
        bounced.append(BouncedRecipient(address, _is_hard(status, line), status, line))
    if not bounced:
        bounced.append(
            BouncedRecipient(None, _is_hard(default_status, default_line), default_status, default_line)
        )
    return tuple(bounced)


def _copy_start(lowered: str) -> int:
    cut = len(lowered)
    for marker in _COPY_MARKERS:
        index = lowered.find(marker)
        if 0 <= index < cut:
            cut = index
    return cut


def _original_id(message: ParsedMessage, text: str) -> str | None:
    if message.enclosed_message_id:
        return message.enclosed_message_id
    match = _ID_IN_TEXT.search(text)
    if match:
        return normalize_message_id(match.group(1))
    return message.in_reply_to[0] if message.in_reply_to else None


def _notice(message: ParsedMessage, noreply: bool) -> Classification | None:
    """Plain-text bounce and delay notices from MTAs that do not send RFC 3464 reports."""
    subject = _subject_key(message.subject)
    sender = message.from_[0] if message.from_ else None
    daemon = (
        any(_is_daemon(mailbox.address) for mailbox in message.from_)
        or (sender is not None and "mail delivery" in sender.name.lower())
        or message.headers.get("return-path", "").replace(" ", "") == "<>"
    )
    failed_header = bool(message.headers.get("x-failed-recipients"))
    bounce_subject = subject.startswith(_BOUNCE_SUBJECTS)
    delay_subject = subject.startswith(_DELAY_SUBJECTS) and (
        "delay" in subject or "could not send" in subject
    )
    if not (daemon or bounce_subject or delay_subject or failed_header):
        return None
    text = message.text[:SCAN_LIMIT]
    lowered = text.lower()
    region_end = _copy_start(lowered)
    notice = lowered[:region_end]
    permanent = any(phrase in notice for phrase in _FAILURE_PHRASES)
    delay_text = any(phrase in notice for phrase in _DELAY_PHRASES)
    if not failed_header and (
        (delay_subject and (daemon or delay_text))
        or (daemon and not bounce_subject and delay_text and not permanent)
    ):
        reason = f"subject: {message.subject[:60]}" if delay_subject else "delay notice"
        return Classification(MessageKind.DELAY, reason, (), _original_id(message, text), noreply)
    evidence = (
        permanent or _ENHANCED.search(notice[:8192]) is not None or _BASIC.search(notice[:8192]) is not None
    )
    if not (failed_header or (bounce_subject and daemon) or ((bounce_subject or daemon) and evidence)):
        return None
    reason = "X-Failed-Recipients" if failed_header else "bounce notice"
    if bounce_subject:
        reason = f"{reason}: {message.subject[:60]}"
    bounced = _from_text(message, text[:region_end])
    return Classification(MessageKind.BOUNCE, reason, bounced, _original_id(message, text), noreply)


# --- the decision -------------------------------------------------------------------------


def classify(message: ParsedMessage) -> Classification:
    """Kind of `message` with the signal that decided it."""
    noreply = any(is_noreply_address(m.address) for m in message.from_ if m.address) or bool(
        message.sender and message.sender.address and is_noreply_address(message.sender.address)
    )
    replied_to = message.in_reply_to[0] if message.in_reply_to else None

    if message.report_type == "delivery-status" or message.delivery_status:
        bounced = _from_report(message.delivery_status)
        original = message.enclosed_message_id or replied_to
        if bounced:
            return Classification(MessageKind.BOUNCE, "RFC 3464 report", bounced, original, noreply)
        if any(_delayed(entry) for entry in message.delivery_status):
            return Classification(MessageKind.DELAY, "RFC 3464 report: delayed", (), original, noreply)
        if message.delivery_status:
            return Classification(MessageKind.AUTO_REPLY, "RFC 3464 report: delivered", (), original, noreply)
    if message.report_type == "disposition-notification":
        original = message.enclosed_message_id or replied_to
        return Classification(MessageKind.AUTO_REPLY, "RFC 8098 read receipt", (), original, noreply)

    notice = _notice(message, noreply)
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
