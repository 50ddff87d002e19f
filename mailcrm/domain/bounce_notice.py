"""Plain-text bounce and delay notices: the forms that come without an RFC 3464 report.

qmail ("Hi. This is the qmail-send program"), Exim ("A message that you sent could not
be delivered"; "retry time not reached"), Postfix and Sendmail without DSN ("Transcript
of session follows": the recipients are inside it), Lotus Notes/Domino ("DELIVERY
FAILURE: ... was not delivered to:"), Exchange and Office 365 text/HTML NDRs, Gmail's
plain notices, Courier, GMX/Web.de and T-Online (German), Japanese carriers, bare
`MAILER-DAEMON` senders. The recognisable shapes differ, the signals do not:

* who wrote it: a daemon sender (`bounce_text.daemon_sender`), a notice subject in
  one of several languages, an `X-Failed-Recipients` header, or a multipart/report
  whose delivery-status part named nobody;
* what it says: failure wording, or delay wording ("THIS IS A WARNING MESSAGE ONLY",
  "will retry"), read only in the notice part (before the returned copy).

A daemon or subject alone is not enough for mail without failure wording (a
postmaster writing about a new spam filter, or about codes in prose, is a person); a
notice subject from an address that is not a daemon's also needs the signs of
machine mail (the null Return-Path bounces are sent with, `Auto-Submitted`); replies
and forwards in a thread are people's; and an out-of-office reply that quotes "could
not be delivered" is an auto-reply: its sender is a person and its subject says so.
"""

from __future__ import annotations

import unicodedata

from mailcrm.domain.bounce_reasons import SUPPRESSING
from mailcrm.domain.bounce_text import (
    MAX_BOUNCED,
    SCAN_LIMIT,
    Judge,
    addresses_in,
    code_line,
    daemon_sender,
    notice_end,
    segments,
)
from mailcrm.domain.classification import BouncedRecipient, Classification, MessageKind
from mailcrm.domain.messages import ParsedMessage, normalize_message_id

# Subject openings of failure notices (case-folded, NFKC), as the MTAs write them.
BOUNCE_SUBJECTS = (
    "delivery status notification (failure)",
    "undelivered mail returned to sender",
    "undeliverable",
    "undelivered mail",
    "undelivered message",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "mail system error",
    "message delivery failure",
    "message not delivered",
    "message could not be delivered",
    "mail could not be delivered",
    "failure notice",
    "failed delivery",
    "failure delivery",
    "there was an error sending your mail",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "delivery notification: delivery has failed",
    "delivery final failure",
    "permanent delivery failure",
    "returned mail",
    "return mail",
    "nondeliverable",
    "non-deliverable",
    "non delivery",
    "non-delivery",
    "notice of non-delivery",
    "could not deliver",
    "couldn't deliver",
    "address not found",
    "message blocked",
    # German, French, Spanish, Portuguese, Italian, Dutch
    "unzustellbar",
    "nicht zustellbar",
    "unzustellbare",
    "zustellung fehlgeschlagen",
    "mailzustellung fehlgeschlagen",
    "benachrichtigung zum übermittlungsstatus (fehler)",
    "fehler bei der zustellung",
    "non remis",
    "non distribuable",
    "échec de la remise",
    "echec de la remise",
    "notification d'état de remise (échec)",
    "no se puede entregar",
    "no entregado",
    "mensaje no entregado",
    "entrega fallida",
    "não entregue",
    "nao entregue",
    "mensagem não entregue",
    "falha na entrega",
    "não é possível entregar",
    "non recapitabile",
    "mancato recapito",
    "impossibile recapitare",
    "onbestelbaar",
    "niet bezorgd",
    # Russian, Chinese, Japanese
    "не доставлено",
    "недоставленное сообщение",
    "ошибка доставки",
    "возвращенное письмо",
    "系统退信",
    "退信",
    "投递失败",
    "未能送达",
    "无法投递",
    "配信不能",
    "メッセージを配信できません",
    "メール配信に失敗しました",
    "配送エラー",
    "送信エラー",
    "メール送信エラー",
    "メールエラー通知",
    "エラー通知",
    "不達",
)
DELAY_SUBJECTS = (
    "delivery status notification (delay)",
    "delayed mail",
    "delivery delayed",
    "mail delivery delayed",
    "message delayed",
    "delivery delay",
    "delivery notification: delay",
    "warning: message",
    "warning: could not send message",
    "warning: delayed",
    "delivery status notification (warning)",
    "zustellung verzögert",
    "übermittlung verzögert",
    "remise différée",
    "entrega retrasada",
    "entrega atrasada",
    "consegna ritardata",
    "задержка доставки",
    "配信遅延",
    "延迟投递",
)
# Failure wording inside a notice (normalised lower case).
FAILURE_PHRASES = (
    "could not be delivered",
    "couldn't be delivered",
    "can't be delivered",
    "cannot be delivered",
    "wasn't delivered",
    "was not delivered",
    "not delivered to",
    "delivery has failed",
    "delivery failed",
    "delivery to the following recipient",
    "failed permanently",
    "permanent error",
    "permanent failure",
    "permanent fatal errors",
    "following address(es) failed",
    "following address failed",
    "following addresses had permanent",
    "address not found",
    "user unknown",
    "unknown user",
    "unknown recipient",
    "did not reach",
    "cannot be reached",
    "could not be reached",
    "no such user",
    "invalid user address",
    "invalid recipient",
    "does not exist",
    "mailbox unavailable",
    "recipient address rejected",
    "wasn't able to deliver",
    "was unable to deliver",
    "unable to deliver",
    "undeliverable",
    "message not delivered",
    "returned to sender",
    "delivery failure",
    "fatal delivery error",
    "permanent fatal",
    "fehlgeschlagen",
    "permanenter fehler",
    "konnte nicht zugestellt werden",
    "nicht zugestellt",
    "unzustellbar",
    "zustellung fehlgeschlagen",
    "n'a pas pu être remis",
    "n'a pas pu être distribué",
    "non remis",
    "no se pudo entregar",
    "no pudo ser entregado",
    "no se ha podido entregar",
    "não pôde ser entregue",
    "não foi possível entregar",
    "não foi entregue",
    "non è stato possibile recapitare",
    "impossibile recapitare",
    "non recapitat",
    "не может быть доставлено",
    "не удалось доставить",
    "не доставлено",
    "无法投递",
    "无法送达",
    "投递失败",
    "发送失败",
    "未能送达",
    "送信できませんでした",
    "配信できませんでした",
    "届きませんでした",
    "配送できませんでした",
    "送信に失敗",
)
# Wording that says the server is still trying: stronger than the failure wording
# beside it ("could not be delivered for 4 hours. It will be retried ...").
DELAY_PHRASES = (
    "this is a warning message only",
    "this is a warning only",
    "you do not need to resend",
    "no action is required on your part",
    "will be retried",
    "will retry",
    "will continue to try",
    "will keep trying",
    "will try again",
    "delivery attempts will continue",
    "still being retried",
    "is still trying",
    "has been delayed",
    "delivery is delayed",
    "is delayed",
    "has not yet been delivered",
    "has not been delivered yet",
    "not been delivered yet",
    "temporarily deferred",
    "delivery incomplete",
    "wird weiterhin versucht",
    "noch nicht zugestellt",
    "verzögert",
    "différée",
    "retardée",
    "retrasad",
    "atrasad",
    "ritardat",
    "задерж",
    "遅延",
    "延迟",
)
_AUTO_REPLY_SUBJECT_WORDS = ("out of office", "automatic reply", "auto-reply", "autoreply", "abwesen")
_REPLY_PREFIXES = ("re:", "re :", "aw:", "sv:", "fw:", "fwd:", "wg:", "tr:", "rv:", "回复:", "答复:", "転送:")


def _token(value: str | None) -> str:
    return (value or "").partition(";")[0].strip().lower()


def machine_sent(message: ParsedMessage) -> bool:
    """Sent with the null envelope sender bounces must use (RFC 5321 4.5.5), or marked automatic."""
    return_path = message.headers.get("return-path", "").replace(" ", "").lower()
    if return_path == "<>" or return_path.startswith(("<mailer-daemon", "mailer-daemon")):
        return True
    return _token(message.headers.get("auto-submitted")) not in ("", "no")


def subject_key(subject: str) -> str:
    """The subject as its opening is compared: NFKC, case-folded, gateway tags such as
    '[SPAM]', '[EXTERNAL]' or '***SPAM***' removed."""
    text = unicodedata.normalize("NFKC", subject[:500]).casefold().lstrip()
    for _ in range(3):
        if text.startswith("[") and 0 < text.find("]") < 30:
            text = text[text.find("]") + 1 :].lstrip()
        elif text.startswith("***") and 0 < text.find("***", 3) < 30:
            text = text[text.find("***", 3) + 3 :].lstrip()
        else:
            break
    return text.lstrip(" \t[(*")


def original_id(message: ParsedMessage, text: str) -> str | None:
    """Message-ID of the returned message: the enclosed copy's, else one quoted, else In-Reply-To."""
    if message.enclosed_message_id:
        return message.enclosed_message_id
    index = text.lower().find("message-id:")
    if index >= 0:
        found = normalize_message_id(text[index + 11 : index + 1100].partition("\n")[0])
        if found:
            return found
    return message.in_reply_to[0] if message.in_reply_to else None


def recipients(
    message: ParsedMessage, region: str, kind: MessageKind, copy: str = ""
) -> tuple[BouncedRecipient, ...]:
    """Each recipient a notice names, with the status, diagnostic and reason given for it."""
    found = addresses_in(message, region, copy)
    judge = Judge(region)
    bounced: list[BouncedRecipient] = []
    for address, segment in segments(region, found)[:MAX_BOUNCED]:
        # The notice's general wording speaks for a lone recipient, or for addresses listed
        # without words of their own; never for one whose own words say nothing known.
        shared = len(found) == 1 or not any(character.isalpha() for character in segment)
        status, line, reason = judge(segment, shared=shared)
        hard = kind is MessageKind.BOUNCE and reason in SUPPRESSING
        bounced.append(BouncedRecipient(address, hard, status, line, reason))
    if not bounced:
        status, line, reason = Judge("")(region, shared=False)
        bounced.append(BouncedRecipient(None, False, status, line, reason))
    return tuple(bounced)


def read_notice(message: ParsedMessage, noreply: bool, *, report: bool = False) -> Classification | None:
    """A BOUNCE or DELAY classification of a plain-text notice, or None when it is not one.

    `report`: the message is a multipart/report whose delivery-status part named no
    recipient; its text is then read as a notice whatever its sender.
    """
    subject = subject_key(message.subject)
    daemon = daemon_sender(message)
    failed_header = bool(message.headers.get("x-failed-recipients"))
    bounce_subject = subject.startswith(BOUNCE_SUBJECTS)
    delay_subject = subject.startswith(DELAY_SUBJECTS) and not subject.startswith("warning: message from")
    if not (daemon or bounce_subject or delay_subject or failed_header or report):
        return None
    in_thread = subject.startswith(_REPLY_PREFIXES)
    if not (failed_header or report):
        if in_thread and not daemon:
            return None  # a reply or forward in a conversation
        if not daemon and any(word in subject for word in _AUTO_REPLY_SUBJECT_WORDS):
            return None  # a person's out-of-office reply, whatever it quotes
    text = message.text[:SCAN_LIMIT]
    region_end = notice_end(text.lower())
    region = text[:region_end]
    normalized = " ".join(unicodedata.normalize("NFKC", region[:16384]).casefold().split())
    permanent = any(phrase in normalized for phrase in FAILURE_PHRASES)
    still_trying = any(phrase in normalized for phrase in DELAY_PHRASES)
    original = original_id(message, text)

    delay = not failed_header and not bounce_subject and (delay_subject or still_trying)
    status, _ = code_line(normalized[:8192])
    machine = machine_sent(message)
    if delay and (delay_subject or report or (daemon and machine)):
        bounced = recipients(message, region, MessageKind.DELAY, text[region_end:])
        reason = f"subject: {message.subject[:60]}" if delay_subject else "delay notice"
        return Classification(MessageKind.DELAY, reason, bounced, original, noreply)
    listed = bool(message.headers.get("list-id") or message.headers.get("list-unsubscribe"))
    if failed_header or report:
        evident = True
    elif daemon and in_thread:  # 'Re: <subject>' from a server (Apache James), or a postmaster replying
        transcript = permanent and status is not None and "rcpt to" in normalized
        evident = (machine and (permanent or status is not None)) or transcript
    elif daemon:  # a postmaster writing about a code in prose is a person
        evident = bounce_subject or (permanent and (status is not None or machine))
    elif noreply and bounce_subject and permanent and not listed:  # a provider's no-reply notice (au one net)
        evident = status is not None or bool(addresses_in(message, region))
    else:  # a notice subject from an address that is not a daemon's: needs machine signs
        evident = bounce_subject and machine and (permanent or status is not None)
    if not evident:
        return None
    reason = "X-Failed-Recipients" if failed_header else "bounce notice"
    if bounce_subject:
        reason = f"{reason}: {message.subject[:60]}"
    return Classification(
        MessageKind.BOUNCE,
        reason,
        recipients(message, region, MessageKind.BOUNCE, text[region_end:]),
        original,
        noreply,
    )
