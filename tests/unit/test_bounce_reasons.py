"""`bounce_reasons.reason_of`: the one judge of why a delivery failed, and whether that suppresses."""

from __future__ import annotations

import pytest
from scaling import FACTOR, assert_linear

from mailcrm.domain.bounce_reasons import SUPPRESSING, BounceReason, reason_of, suppresses

R = BounceReason


@pytest.mark.parametrize(
    ("status", "diagnostic", "reason"),
    [
        # The examples the sender relies on for SMTP replies at send time.
        (
            None,
            "550 5.7.26 Unauthenticated email from acme.example is not accepted due to domain's DMARC policy",
            R.AUTHFAILURE,
        ),
        (None, "552 5.2.2 mailbox full", R.MAILBOXFULL),
        (None, "550 5.1.1 user unknown", R.USERUNKNOWN),
        # Specific words win over a generic or wrong code.
        ("5.1.1", "550 5.1.1 Service unavailable; client [192.0.2.1] blocked using Spamhaus", R.BLOCKED),
        ("5.7.1", "550 5.7.1 No such user!", R.USERUNKNOWN),
        ("5.0.0", "554 5.0.0 Mailbox quota exceeded", R.MAILBOXFULL),
        ("5.7.1", "554 5.7.1 <a@b.example>: Relay access denied", R.NORELAYING),
        ("5.7.1", "550 5.7.1 Message rejected as spam", R.SPAMDETECTED),
        ("5.7.1", "550 5.7.1 Message rejected due to local policy", R.POLICYVIOLATION),
        (
            "4.4.1",
            "delivery temporarily suspended: connect to mx[192.0.2.9]:25: Connection timed out",
            R.EXPIRED,
        ),
        (None, "retry time not reached for any host after a long failure period", R.EXPIRED),
        (None, "Sorry, I couldn't find any host named nosuch.example. (#5.1.2)", R.HOSTUNKNOWN),
        (None, "551 5.1.6 User has moved; please try <new@b.example>", R.HASMOVED),
        (None, "550-5.2.1 The email account that you tried to reach is disabled.", R.SUSPEND),
        (None, "556 5.1.10 Recipient address has null MX", R.NOTACCEPT),
        ("5.1.8", "553 5.1.8 Domain of sender address a@acme.example does not exist", R.REJECTED),
        # Codes that name a cause by themselves.
        ("5.1.1", None, R.USERUNKNOWN),
        ("5.1.2", None, R.HOSTUNKNOWN),
        ("5.2.2", None, R.MAILBOXFULL),
        ("5.7.26", None, R.AUTHFAILURE),
        ("5.7.27", None, R.REJECTED),  # the *sender's* domain has a null MX: not the recipient's fault
        ("5.7.606", None, R.BLOCKED),
        (
            "5.2.1",
            None,
            R.FILTERED,
        ),  # a bare 5.2.1 is the recipient's settings; "disabled" wording is SUSPEND
        (None, "556 SMTP protocol returned a permanent error", R.NOTACCEPT),
        (None, "550 5.0.0 <a@b.example>: User reject", R.FILTERED),
        # Generic codes with generic words; nothing at all.
        ("5.0.0", "550 Requested action not taken: mailbox unavailable", R.USERUNKNOWN),
        ("5.7.1", "550 5.7.1 Requested action not taken", R.POLICYVIOLATION),
        ("5.0.0", "554 Transaction failed", R.ONHOLD),
        (None, "The message could not be delivered", R.UNDEFINED),
        (None, None, R.UNDEFINED),
    ],
)
def test_reason_of(status: str | None, diagnostic: str | None, reason: BounceReason) -> None:
    assert reason_of(status, diagnostic) is reason


@pytest.mark.parametrize(
    ("diagnostic", "reason"),
    [
        ("Benutzer unbekannt", R.USERUNKNOWN),
        ("Das Postfach des Empfängers ist voll", R.MAILBOXFULL),
        ("Utilisateur inconnu", R.USERUNKNOWN),
        ("La boîte aux lettres du destinataire est pleine", R.MAILBOXFULL),
        ("Usuario desconocido", R.USERUNKNOWN),
        ("El buzón está lleno", R.MAILBOXFULL),
        ("Usuário desconhecido", R.USERUNKNOWN),
        ("A caixa postal está cheia", R.MAILBOXFULL),
        ("Utente sconosciuto", R.USERUNKNOWN),
        ("Casella di posta piena", R.MAILBOXFULL),
        ("Пользователь не найден", R.USERUNKNOWN),
        ("Ящик переполнен", R.MAILBOXFULL),
        ("收件人邮箱不存在", R.USERUNKNOWN),
        ("收件人邮箱空间已满", R.MAILBOXFULL),
        ("宛先不明のため送信できませんでした", R.USERUNKNOWN),
        ("メールボックスの容量がいっぱいです", R.MAILBOXFULL),
        ("ＵＳＥＲ ＵＮＫＮＯＷＮ", R.USERUNKNOWN),  # full-width, as some Japanese MTAs write it
    ],
)
def test_reason_of_reads_several_languages(diagnostic: str, reason: BounceReason) -> None:
    assert reason_of(None, diagnostic) is reason


def test_only_permanent_recipient_failures_suppress() -> None:
    assert {R.USERUNKNOWN, R.HOSTUNKNOWN, R.HASMOVED, R.SUSPEND, R.NOTACCEPT} == SUPPRESSING
    assert suppresses(R.USERUNKNOWN)
    assert not suppresses(R.USERUNKNOWN, permanent=False)
    for reason in (R.MAILBOXFULL, R.BLOCKED, R.AUTHFAILURE, R.SPAMDETECTED, R.EXPIRED, R.UNDEFINED):
        assert not suppresses(reason)


@pytest.mark.parametrize(
    ("unit", "repeats"), [("a", 200_000), ("5.", 100_000), ("550 ", 50_000), ("user ", 40_000)]
)
def test_reason_of_is_linear_on_hostile_text(unit: str, repeats: int) -> None:
    small, large = unit * (repeats // FACTOR), unit * repeats
    assert_linear(lambda: reason_of(None, small), lambda: reason_of(None, large))


def test_unknown_user_after_data_is_the_recipients_filter() -> None:
    """Carriers answer a generic "Unknown user" to content their user's settings refuse."""
    assert reason_of(None, "550 Unknown user a@b.example (in reply to end of DATA command)") is R.FILTERED
    # A 5.1.x status, or a provider's own wording, still means the address is gone.
    assert reason_of("5.1.1", "550 5.1.1 User unknown (in reply to end of DATA command)") is R.USERUNKNOWN
    yahoo = (
        "554 delivery error: dd This user doesn't have a yahoo.com account (in reply to end of DATA command)"
    )
    assert reason_of(None, yahoo) is R.USERUNKNOWN


def test_temporary_dns_failure_is_not_an_unknown_host() -> None:
    lookup = "Host or domain name not found. Name service error for name=customer.example type=MX: "
    assert reason_of("5.4.4", lookup + "Host not found") is R.HOSTUNKNOWN
    assert reason_of("5.4.4", lookup + "Host not found, try again") is R.NETWORKERROR


@pytest.mark.parametrize(
    ("status", "diagnostic"),
    [
        # Exim: the sender's domain, not the recipient's, is unknown to the remote server.
        (
            "5.1.7",
            "SMTP error from remote mail server after MAIL FROM:<s@a.example>: 550 5.1.7 No such domain",
        ),
        (None, "SMTP error from remote mail server after MAIL FROM:<s@acme.example>: 550 No such user here"),
        # Postfix: refused before any recipient was given.
        (None, "said: 550 5.1.1 <s@acme.example>: user unknown (in reply to MAIL FROM command)"),
        # RFC 3463 X.1.8: bad sender's system address, whatever the words say.
        ("5.1.8", "501 5.1.8 Address rejected: domain not found"),
    ],
)
def test_refusal_of_the_sender_never_suppresses_the_recipient(status: str | None, diagnostic: str) -> None:
    """A reply to MAIL FROM or a sender-address status judges the sender's address."""
    reason = reason_of(status, diagnostic)
    assert reason is R.REJECTED
    assert not suppresses(reason)


@pytest.mark.parametrize(
    ("diagnostic", "reason"),
    [
        ("Esta casilla ha expirado por falta de uso.", R.SUSPEND),  # Argentine qmail
        ("550 This account has expired due to inactivity", R.SUSPEND),
        ("User mailbox exceeds allowed size: a@b.example", R.MAILBOXFULL),  # IMail
        ("550 zen.example.net Listed by CSS", R.BLOCKED),
    ],
)
def test_reason_of_reads_wordings_seen_in_the_held_out_corpus(diagnostic: str, reason: BounceReason) -> None:
    assert reason_of(None, diagnostic) is reason
