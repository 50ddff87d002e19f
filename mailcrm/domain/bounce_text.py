"""Reading a bounce notice's text: where the notice ends, who it is about, and why.

Shared by the RFC 3464 reader (`bounce_report`, when a report lacks a diagnostic) and
the plain-text notice reader (`bounce_notice`). Which addresses count is the delicate
part: a notice names the bounced recipient, but also the sender (its own To, the
returned message's From, the transcript's `MAIL FROM`), the postmaster, a help desk,
and Message-IDs that look like addresses. Only the first may ever be suppressed, so an
address is taken only when nothing says it is one of the others:

* the notice's own parties (From, To, Cc, Sender, Reply-To, Return-Path, Delivered-To)
  and the returned original's From are never recipients;
* daemon, no-reply and role addresses (postmaster, abuse, help desks) are never
  recipients, nor are addresses after help wording ("contact", "mailto:", "write to")
  or on `From:`, `MAIL FROM`, `Message-ID:`, `Cc:`, `Delivered-To:` lines;
* an address seen only on a copied `To:` line (the original's recipients) gives way
  to the addresses the notice says failed;
* X-Failed-Recipients and `Final-Recipient:` / `Original-Recipient:` lines in the text
  win over scraping;
* when the text names nobody, the returned original's only recipient (its To/Cc, from
  the enclosed part or the copy written inline) is the one.

Every pattern is linear (possessive runs) and the text is read up to `SCAN_LIMIT`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailcrm.domain.addresses import InvalidAddress, normalize_address
from mailcrm.domain.bounce_reasons import BounceReason, reason_of, refused_after_data
from mailcrm.domain.messages import ParsedMessage, parse_mailboxes

SCAN_LIMIT = 64 * 1024  # characters of body text searched for bounce details
MAX_BOUNCED = 100
DIAGNOSTIC_LIMIT = 500
_SEGMENT_LIMIT = 1500  # characters after an address read as its diagnostic

_LOCAL_SEPARATORS = re.compile(r"[-_.+=]")
DAEMON_LOCALS = frozenset(
    {"mailerdaemon", "maildaemon", "postmaster", "mailerdeamon", "mailadmin", "maildeliverysystem", "mdaemon"}
)
# Role mailboxes a notice quotes for help; never the recipient of the returned message.
_ROLE_LOCALS = frozenset({"abuse", "hostmaster", "webmaster", "helpdesk", "support", "noc", "security"})
_DAEMON_NAMES = (
    "mailer-daemon",
    "mailer daemon",
    "mail delivery",
    "mail deliver system",
    "postmaster",
    "mail administrator",
    "interscan",
    "content-filter",
)


def local_tokens(address: str) -> list[str]:
    local = address.strip().strip("<>").rpartition("@")[0] or address
    return [token for token in _LOCAL_SEPARATORS.split(local.lower()) if token]


def is_daemon_address(address: str | None) -> bool:
    """MAILER-DAEMON, postmaster, Exchange's MicrosoftExchange<hex> system mailbox."""
    if not address:
        return False
    joined = "".join(local_tokens(address))
    return joined in DAEMON_LOCALS or joined.startswith("microsoftexchange")


# Words one of which every daemon's From header holds: a cheap first test for human mail.
_DAEMON_HINTS = (
    "daemon",
    "deamon",
    "master",  # postmaster, post_master, post.master
    "deliver",
    "admin",
    "microsoftexchange",
    "interscan",
    "content-filter",
)


def daemon_sender(message: ParsedMessage) -> bool:
    """True when a mail server, not a person, wrote `message` (From says so)."""
    raw = message.headers.get("from", "")[:300].lower()
    if not any(hint in raw for hint in _DAEMON_HINTS):
        return False
    for mailbox in message.from_:
        if is_daemon_address(mailbox.address):
            return True
        name = mailbox.name.lower()
        if any(word in name for word in _DAEMON_NAMES):
            return True
        if mailbox.address is None and name.replace(" ", "") in ("mailer-daemon", "postmaster"):
            return True
    return raw.startswith("mailer-daemon") or "<mailer-daemon" in raw


def recipient_address(*candidates: str | None) -> str | None:
    """The first candidate that is a usable address, normalised."""
    for candidate in candidates:
        if candidate:
            text = candidate.strip().strip("<>").strip()
            if text.startswith('"') and '"@' not in text:
                text = text.strip('"')
            try:
                return normalize_address(text)
            except InvalidAddress:
                continue
    return None


def _header_addresses(value: str) -> set[str]:
    found: set[str] = set()
    for match in _EMAIL_IN_TEXT.finditer(value[:8192]):
        address = recipient_address(match.group())
        if address:
            found.add(address)
    return found


def own_addresses(message: ParsedMessage) -> set[str]:
    """The notice's own parties and the returned message's sender: never bounced recipients."""
    found = {
        mailbox.address
        for mailbox in (*message.from_, *message.to, *message.cc, *message.reply_to)
        if mailbox.address
    }
    if message.sender is not None and message.sender.address:
        found.add(message.sender.address)
    for name in ("return-path", "delivered-to", "x-original-to", "envelope-to", "errors-to"):
        found |= _header_addresses(message.headers.get(name, ""))
    found |= _header_addresses(message.enclosed_headers.get("from", ""))
    return found


def original_recipients(message: ParsedMessage) -> set[str]:
    """To and Cc of the returned original, when the notice encloses it."""
    found: set[str] = set()
    for name in ("to", "cc"):
        value = message.enclosed_headers.get(name)
        if value:
            found |= {
                mailbox.address for mailbox in parse_mailboxes(value, name, None, []) if mailbox.address
            }
    return found


# --- where the notice ends ----------------------------------------------------------------

# Where the copy of the returned message starts in the text: addresses below are the original's.
_COPY_MARKERS = (
    "------ this is a copy of the message",
    "--- below this line is a copy of the message",
    "----- original message -----",
    "-------original message",
    "-------original mail info",
    "-----original message-----",
    "------- returned message",
    "----- unsent message below -----",
    "original message follows",
    "--- the header of the original message is following",
    "original message headers:",
    "----- message header follows -----",
    "--- original message header ---",
    "content-type: message/rfc822",
    "\nreturn-path:",
    "\nreceived: from",
    "\nmessage-id:",
    "\ndkim-signature:",
)


def notice_end(lowered: str) -> int:
    """Where the returned copy starts in lower-cased notice text (its length when nowhere)."""
    cut = len(lowered)
    for marker in _COPY_MARKERS:
        index = lowered.find(marker, 0, cut)
        if 0 <= index < cut:
            cut = index
    return cut


# --- addresses in the text ----------------------------------------------------------------

_EMAIL_IN_TEXT = re.compile(r"(?<![\w.+=%'/-])[\w.+=%'-]{1,64}+@[\w-]{1,63}+(?:\.[\w-]{1,63}+){1,10}+")
_REPORT_LINE = re.compile(
    r"(?im)^[ \t]*+(?:final|original)-recipient:[ \t]*+(?:rfc822[ \t]*+;)?[ \t]*+<?([^\s<>;]{3,254}+)"
)
# Words just before an address that make it a contact, not a recipient.
_HELP_CUES = (
    "contact",
    "mailto:",
    "write to",
    "e-mail to",
    "email to",
    "send mail to",
    "send an email",
    "reach",
    "help",
    "support",
    "administrator",
    "questions",
    "report",
    "complain",
    "wenden sie sich",
    "kontakt",
    "contacter",
    "contacte",
    "contatt",
    "お問い合わせ",
    "联系",
)
# Lines whose addresses are the sender's side or message identifiers.
_OWN_LINE_CUES = (
    "mail from",
    "from:",
    "sender:",
    "reply-to:",
    "return-path",
    "message-id",
    "msg-id",
    "in-reply-to",
    "references:",
    "envelope-from",
    "smtp.mailfrom",
    "header.from",
    "absender",
    "expéditeur",
    "remitente",
)


# Line openings that name someone else: the sender ('The original message was received
# ... from a@b'), the copied original's other recipients and its delivery headers.
_NOT_RECIPIENT_LINES = ("from ", "cc:", "bcc:", "delivered-to:", "x-original-to:", "envelope-to:")


def _line_of(text: str, position: int) -> tuple[int, str]:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return start, text[start : end if end >= 0 else len(text)]


def _excluded(text: str, match: re.Match[str], address: str, own: set[str]) -> bool:
    if address in own or is_daemon_address(address):
        return True
    tokens = local_tokens(address)
    joined = "".join(tokens)
    if joined in _ROLE_LOCALS or joined.startswith(("noreply", "donotreply")):
        return True
    line_start, line = _line_of(text, match.start())
    before = line[max(0, match.start() - line_start - 60) : match.start() - line_start].lower()
    if any(cue in before for cue in _HELP_CUES):
        return True
    lowered = line.lower()
    if lowered.lstrip().startswith(_NOT_RECIPIENT_LINES):
        return True
    return any(cue in lowered for cue in _OWN_LINE_CUES) and "rcpt to" not in lowered


_COPIED_TO = re.compile(r"(?im)^(?:to|cc):[ \t]*+([^\n]{1,2000}+)")


def _copied_recipients(copy: str) -> set[str]:
    """To/Cc of a returned copy written into the notice's text (no message/rfc822 part)."""
    head = copy[:16384]
    blank = head.find("\n\n", head.find(":"))
    found: set[str] = set()
    for match in _COPIED_TO.finditer(head, 0, blank if blank >= 0 else len(head)):
        found |= _header_addresses(match.group(1))
    return found


def addresses_in(message: ParsedMessage, region: str, copy: str = "") -> list[tuple[str, int]]:
    """The bounced recipients a notice's text names, with where each first appears.

    `copy` is the text after the notice (the returned message written inline), read
    for its To/Cc when the returned original is not attached.
    """
    lowered = region.lower()
    found: dict[str, int] = {}
    failed_header = message.headers.get("x-failed-recipients", "")
    for match in _EMAIL_IN_TEXT.finditer(failed_header[:8192]):
        address = recipient_address(match.group())
        if address and not is_daemon_address(address):
            found.setdefault(address, lowered.find(address))
    if not found:
        for match in _REPORT_LINE.finditer(region):
            address = recipient_address(match.group(1))
            if address:
                found.setdefault(address, match.start(1))
    if found:
        return list(found.items())[:MAX_BOUNCED]
    own = own_addresses(message)
    quoted: set[str] = set()  # so far named only on a copied 'To:' line (the original's recipients)
    for match in _EMAIL_IN_TEXT.finditer(region):
        address = recipient_address(match.group())
        if address is None or (address in found and address not in quoted):
            continue
        if _excluded(region, match, address, own):
            continue
        on_to_line = _line_of(region, match.start())[1].lstrip().lower().startswith("to:")
        if address in found and on_to_line:
            continue
        found[address] = match.start()  # a later mention outside a 'To:' line is where it failed
        if on_to_line:
            quoted.add(address)
        else:
            quoted.discard(address)
        if len(found) >= MAX_BOUNCED:
            break
    if quoted and len(quoted) < len(found):
        found = {address: start for address, start in found.items() if address not in quoted}
    if not found:  # the notice names nobody: the returned message's only recipient
        originals = original_recipients(message) or (_copied_recipients(copy) if copy else set())
        if len(originals) == 1:
            only = next(iter(originals))
            if only not in own and not is_daemon_address(only):
                found[only] = -1
    return list(found.items())


# --- why ----------------------------------------------------------------------------------

_ENHANCED = re.compile(r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?![\w])")
_BASIC = re.compile(r"(?<![\w.#-])[245][0-5]\d(?=[ -]|$)", re.M)


def code_line(text: str) -> tuple[str | None, str | None]:
    """The first SMTP status in `text` and the reply it starts, up to the paragraph's end."""
    found = _ENHANCED.search(text)
    basic = _BASIC.search(text)
    if basic is not None and (found is None or basic.start() < found.start()):
        line_end = text.find("\n", basic.start())
        enhanced = _ENHANCED.search(text, basic.start(), line_end if line_end >= 0 else len(text))
        code = enhanced.group() if enhanced is not None else basic.group()
        start = basic.start()
    elif found is not None:
        code, start = found.group(), found.start()
        line_start = text.rfind("\n", 0, start) + 1
        if _BASIC.match(text, line_start) or text[line_start:start].strip().startswith(("#", "<<<")):
            start = line_start  # '#550 5.1.1 ...', '<<< 550 5.1.1 ...': keep the reply whole
    else:
        return None, None
    end = text.find("\n\n", start)
    reply = " ".join(text[start : end if end >= 0 else start + DIAGNOSTIC_LIMIT].split())
    return code, reply[:DIAGNOSTIC_LIMIT] or None


class Judge:
    """Status, diagnostic line and reason of the text about each recipient of one notice.

    A recipient's own words (what follows its address) decide; when they say nothing
    recognisable, the whole notice is read instead (the reason stated once for
    everyone), once per status code however many recipients share it.
    """

    def __init__(self, notice: str) -> None:
        self.notice = notice[: _SEGMENT_LIMIT * 2]
        self.wider: dict[str | None, tuple[str | None, str | None, BounceReason]] = {}

    def __call__(self, segment: str, *, shared: bool) -> tuple[str | None, str | None, BounceReason]:
        segment = segment[:_SEGMENT_LIMIT]
        status, line = code_line(segment)
        reason = reason_of(status, segment)
        if reason in (BounceReason.UNDEFINED, BounceReason.ONHOLD) and shared and self.notice:
            wider_status, wider_line, wider = self._wider(status)
            if wider not in (BounceReason.UNDEFINED, BounceReason.ONHOLD) or status is None:
                status, line, reason = status or wider_status, line or wider_line, wider
        if line is None:
            text = " ".join(segment.split())
            line = text[:DIAGNOSTIC_LIMIT] or None
        return status, line, refused_after_data(reason, status, segment)

    def _wider(self, status: str | None) -> tuple[str | None, str | None, BounceReason]:
        if status not in self.wider:
            wider_status, wider_line = code_line(self.notice)
            self.wider[status] = (wider_status, wider_line, reason_of(status or wider_status, self.notice))
        return self.wider[status]


def segments(region: str, found: Iterable[tuple[str, int]]) -> list[tuple[str, str]]:
    """Each address with the text from it to the next address (its diagnostic)."""
    ordered = sorted(found, key=lambda item: item[1])
    result: list[tuple[str, str]] = []
    for index, (address, start) in enumerate(ordered):
        if start < 0:
            result.append((address, ""))
            continue
        end = ordered[index + 1][1] if index + 1 < len(ordered) else len(region)
        result.append((address, region[start + len(address) : max(end, start + len(address))]))
    return result
