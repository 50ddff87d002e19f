"""Message bytes: what the stdlib parser (and mailcrm's own) reads back, line limits, injection.

Names and subjects are compared with an RFC 2047 decoder as well as `policy.default`:
Python 3.11's `policy.default` keeps the folding space between two adjacent encoded-words
inside a display name, which RFC 2047 §6.2 says to drop, so a long non-ASCII name split
over several words reads back there with extra spaces.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import re
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scaling import FACTOR, assert_linear

from mailcrm.domain.messages import parse_message
from mailcrm.domain.mime import (
    Address,
    HeaderInjectionError,
    build_message,
    make_message_id,
    rfc5322_date,
)
from mailcrm.errors import ValidationError

SENDER = Address("alice@acme.example", "Alice Morgan")
TO = Address("somchai@example.co.th", "สมชาย ใจดี")
WHEN = datetime(2024, 3, 5, 10, 0, tzinfo=timezone(timedelta(hours=7)))
UNSUBSCRIBE = "https://crm.acme.example/u/" + "t" * 120
MAILTO = "mailto:unsubscribe@acme.example?subject=unsubscribe"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "sender": SENDER,
        "to": TO,
        "subject": "Thank you for your purchase",
        "text": "Hi Somchai,\n\nThank you.\n",
        "html": "<p>Hi Somchai,</p><p>Thank you.</p>",
        "message_id": "<abc123@acme.example>",
        "date": WHEN,
    }
    fields.update(changes)
    return build_message(**fields)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def header_names(raw: bytes) -> list[str]:
    return [
        line.split(b":", 1)[0].decode() for line in head(raw).split(b"\r\n") if line[:1] not in (b" ", b"\t")
    ]


def raw_header(raw: bytes, name: str) -> str:
    """The unfolded raw value of one header."""
    unfolded = re.sub(rb"\r\n[ \t]", b" ", head(raw)).decode("ascii")
    for line in unfolded.split("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    raise KeyError(name)


def rfc2047(value: str) -> str:
    """Decode as RFC 2047 says (whitespace between adjacent encoded-words dropped)."""
    return str(make_header(decode_header(value)))


def display_name(raw: bytes, header: str = "To") -> str:
    value = raw_header(raw, header)
    phrase = value.rsplit("<", 1)[0].strip()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return rfc2047(phrase)


# --- structure ------------------------------------------------------------------------------


def test_round_trip_through_the_stdlib_parser() -> None:
    raw = build(
        text="Hi สมชาย,\nline two\n",
        html="<p>สวัสดี</p>",
        in_reply_to="<first@acme.example>",
        references=["<root@acme.example>"],
        reply_to=Address("sales@acme.example", "Acme Sales"),
        list_unsubscribe_url=UNSUBSCRIBE,
        list_unsubscribe_mailto=MAILTO,
        extra_headers={"X-Mailcrm-Rule": "thank-you", "Auto-Submitted": "auto-generated"},
    )
    message = parse(raw)
    assert message.defects == []
    assert message["From"].addresses[0].addr_spec == "alice@acme.example"
    assert message["From"].addresses[0].display_name == "Alice Morgan"
    assert [a.addr_spec for a in message["To"].addresses] == ["somchai@example.co.th"]
    assert message["To"].addresses[0].display_name == "สมชาย ใจดี"
    assert message["Reply-To"].addresses[0].addr_spec == "sales@acme.example"
    assert str(message["Subject"]) == "Thank you for your purchase"
    assert message["Message-ID"] == "<abc123@acme.example>"
    assert message["In-Reply-To"] == "<first@acme.example>"
    assert message["References"].split() == ["<root@acme.example>", "<first@acme.example>"]
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) == WHEN
    assert message["X-Mailcrm-Rule"] == "thank-you"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Hi สมชาย,\nline two\n"
    assert html.get_content().replace("\r\n", "\n") == "<p>สวัสดี</p>\n"
    assert "Bcc" not in message


def test_text_only_message_is_single_part() -> None:
    message = parse(build(html=None, text="plain only"))
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == "plain only\n"


def test_crlf_everywhere_and_lines_within_78() -> None:
    raw = build(
        subject="ขอบคุณสำหรับการสั่งซื้อ คุณสมชาย — thank you very much for the seminar ticket " * 3,
        to=Address("x@example.com", "王小明 " * 30),
        text="ข้อความ " * 500 + "\nshort\n" + "x" * 300,
        html="<p>" + "word " * 400 + "</p>",
        references=[f"<id{i}@acme.example>" for i in range(30)],
    )
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 78, line


def test_encodings_follow_the_script() -> None:
    english = parse(build(text="Hello, the quote is attached.\n", html=None))
    thai = parse(build(text="ขอบคุณที่เลือกซื้อสินค้าของเรา\n", html=None))
    chinese = parse(build(text="感谢您的购买。\n", html=None))
    khmer = parse(build(text="សូមអរគុណដែលបានទិញ\n", html=None))
    assert english["Content-Transfer-Encoding"] == "quoted-printable"
    for message in (thai, chinese, khmer):
        assert message["Content-Transfer-Encoding"] == "base64"


def test_quoted_printable_keeps_trailing_space_and_long_lines() -> None:
    text = "trailing space \n" + "y" * 200 + "\n= sign\n.\nFrom here\n"
    message = parse(build(text=text, html=None))
    assert message.get_content().replace("\r\n", "\n") == text


def test_boundary_is_random_and_absent_from_the_content() -> None:
    first = parse(build()).get_boundary()
    second = parse(build()).get_boundary()
    assert first and second and first != second
    raw = build(text=f"--{first}\n", html=f"<p>--{first}</p>")
    boundary = parse(raw).get_boundary()
    assert boundary is not None
    assert raw.count(f"--{boundary}".encode()) == 3


def test_encoded_words_never_split_a_character() -> None:
    subject = "ขอบคุณ 感谢 សូមអរគុណ 😀 " * 8
    raw = build(subject=subject, to=Address("x@example.com", subject))
    words = re.findall(rb"=\?utf-8\?([bq])\?([^?]*)\?=", head(raw))
    assert words
    for kind, payload in words:
        data = base64.b64decode(payload) if kind == b"b" else _q_decode(payload)
        data.decode("utf-8")  # strict: each word holds whole characters
    for line in head(raw).split(b"\r\n"):
        for word in re.findall(rb"=\?[^ ]*\?=", line):
            assert len(word) <= 75
    assert str(parse(raw)["Subject"]) == subject
    assert display_name(raw) == subject.strip() or display_name(raw) == subject


def _q_decode(payload: bytes) -> bytes:
    return re.sub(rb"=([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), payload.replace(b"_", b" "))


def test_mostly_ascii_subject_uses_q_encoding() -> None:
    raw = build(subject="Danke für Ihren Einkauf")
    assert "=?utf-8?q?" in raw_header(raw, "Subject")
    assert str(parse(raw)["Subject"]) == "Danke für Ihren Einkauf"


def test_long_ascii_subject_folds_between_words() -> None:
    subject = " ".join(["word"] * 60)
    raw = build(subject=subject)
    assert raw_header(raw, "Subject") == subject
    assert b"=?" not in head(raw).split(b"Subject:")[1].split(b"\r\nMessage-ID")[0]
    assert str(parse(raw)["Subject"]) == subject


# --- display names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Alice Morgan",
        "Morgan, Alice",
        'Alice "Ally" Morgan',
        "back\\slash",
        "O'Brien (Sales)",
        "alice@evil.example",
        "<bob@evil.example>",
        "Ünïcödé Name",
        "王小明",
        "علی رضایی",
    ],
)
def test_display_names_round_trip(name: str) -> None:
    raw = build(to=Address("x@example.com", name))
    message = parse(raw)
    assert [a.addr_spec for a in message["To"].addresses] == ["x@example.com"]
    assert message["To"].addresses[0].display_name == name
    assert parse_message(raw).to[0].name == name
    assert parse_message(raw).to[0].address == "x@example.com"


def test_over_long_quoted_name_is_encoded_not_folded_inside_quotes() -> None:
    name = 'The "Very Important" \\ Customer With A Long Name ' * 4
    raw = build(to=Address("x@example.com", name))
    assert display_name(raw) == name
    assert parse_message(raw).to[0].name.split() == name.split()
    assert [a.addr_spec for a in parse(raw)["To"].addresses] == ["x@example.com"]


# --- header injection: CR/LF/NUL in names and subjects never add a header ----------------

INJECTIONS = [
    "Eve\r\nBcc: x@evil.example",
    "Eve\nBcc: x@evil.example",
    "Eve\rBcc: x@evil",
    "Eve\x00",
    "Eve\n",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_control_characters_in_a_name_are_refused(payload: str) -> None:
    with pytest.raises(HeaderInjectionError, match="'To'"):
        build(to=Address("x@example.com", payload))
    with pytest.raises(HeaderInjectionError, match="'From'"):
        build(sender=Address("alice@acme.example", payload))
    with pytest.raises(HeaderInjectionError, match="'Reply-To'"):
        build(reply_to=Address("alice@acme.example", payload))


@pytest.mark.parametrize("payload", INJECTIONS)
def test_control_characters_in_a_subject_are_refused(payload: str) -> None:
    with pytest.raises(HeaderInjectionError, match="'Subject'"):
        build(subject=payload)


@pytest.mark.parametrize("payload", ["x@example.com\r\nBcc: y@evil", "x@example.com\n", "x\x00@example.com"])
def test_control_characters_in_an_address_are_refused(payload: str) -> None:
    with pytest.raises(HeaderInjectionError):
        build(to=Address(payload, "X"))


@pytest.mark.parametrize(
    "address",
    [
        "x y@example.com",
        "x@example.com>, <y@evil.example",
        "ü ser@example.com",
        "\u00a0ser@example.com",
        "\u200eser@example.com",
        "üser@exämple.com",
        "no-at-sign",
        "",
    ],
)
def test_unusable_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValidationError):
        build(to=Address(address, "X"))


@pytest.mark.parametrize("address", ["üser@example.org", "ผู้ใช้@example.com", "用户@example.cn"])
def test_a_non_ascii_local_part_is_written_as_utf8(address: str) -> None:
    """RFC 6532: the address stays readable in To; the sender adds SMTPUTF8 to MAIL FROM."""
    raw = build(to=Address(address, "สมชาย ใจดี"))
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    assert message["To"].addresses[0].display_name == "สมชาย ใจดี"


def test_encoded_word_lookalike_stays_literal_text() -> None:
    payload = "=?UTF-8?Q?=0A?=Bcc: x@evil.example"
    baseline = build(to=Address("x@example.com", "Plain"), subject="Plain")
    raw = build(to=Address("x@example.com", payload), subject=payload)
    message = parse(raw)
    assert [a.addr_spec for a in message["To"].addresses] == ["x@example.com"]
    assert message["To"].addresses[0].display_name == payload
    assert str(message["Subject"]) == payload
    assert "Bcc" not in message
    assert header_names(raw) == header_names(baseline)
    parsed = parse_message(raw)
    assert [m.address for m in parsed.to] == ["x@example.com"]
    assert parsed.cc == ()


def test_injection_in_extra_headers_is_refused() -> None:
    with pytest.raises(HeaderInjectionError):
        build(extra_headers={"X-Note": "ok\r\nBcc: x@evil.example"})
    with pytest.raises(HeaderInjectionError):
        build(extra_headers={"X-Note\r\nBcc": "x"})
    with pytest.raises(HeaderInjectionError, match="'Bcc'"):
        build(extra_headers={"Bcc": "x@evil.example"})
    with pytest.raises(HeaderInjectionError):
        build(extra_headers={"content-type": "text/html"})
    with pytest.raises(ValidationError):
        build(extra_headers={"Bad Name": "x"})


def test_ids_and_urls_with_controls_are_refused() -> None:
    with pytest.raises(HeaderInjectionError):
        build(message_id="<a@b>\r\nBcc: x@evil")
    with pytest.raises(HeaderInjectionError):
        build(in_reply_to="<a@b>\n")
    with pytest.raises(HeaderInjectionError):
        build(references=["<a@b>", "<c@d>\r\nBcc: x"])
    with pytest.raises(HeaderInjectionError):
        build(list_unsubscribe_url="https://x.example/u\r\nBcc: x")
    with pytest.raises(ValidationError):
        build(list_unsubscribe_url="https://x.example/u <y>")
    with pytest.raises(ValidationError):
        build(list_unsubscribe_mailto="https://not-mailto.example")
    with pytest.raises(ValidationError):
        build(message_id="no brackets@x")


# --- threading, unsubscribe, dates, ids -------------------------------------------------------


def test_follow_up_threads_under_the_email_it_follows() -> None:
    raw = build(in_reply_to="<first@acme.example>")
    message = parse(raw)
    assert message["In-Reply-To"] == "<first@acme.example>"
    assert message["References"] == "<first@acme.example>"
    parsed = parse_message(raw)
    assert parsed.in_reply_to == ("<first@acme.example>",)
    assert parsed.references == ("<first@acme.example>",)


def test_references_fold_between_ids_only() -> None:
    ids = [f"<{'x' * 30}{i}@acme.example>" for i in range(10)]
    raw = build(references=ids)
    assert raw_header(raw, "References").split(" ") == ids
    assert parse(raw)["References"].split() == ids


def test_list_unsubscribe_exact_and_unbroken() -> None:
    raw = build(list_unsubscribe_url=UNSUBSCRIBE, list_unsubscribe_mailto=MAILTO)
    assert raw_header(raw, "List-Unsubscribe") == f"<{UNSUBSCRIBE}>, <{MAILTO}>"
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>,\r\n <{MAILTO}>\r\n".encode() in raw
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    short = build(list_unsubscribe_url="https://a.example/u/1", list_unsubscribe_mailto="mailto:u@a.example")
    assert b"List-Unsubscribe: <https://a.example/u/1>, <mailto:u@a.example>\r\n" in short


def test_one_click_post_needs_https() -> None:
    assert b"List-Unsubscribe-Post" not in build(list_unsubscribe_mailto=MAILTO)
    assert b"List-Unsubscribe-Post" not in build(list_unsubscribe_url="http://localhost:8080/u/1")
    assert b"List-Unsubscribe:" not in build()


def test_rfc5322_date() -> None:
    assert rfc5322_date(WHEN) == "Tue, 05 Mar 2024 10:00:00 +0700"
    assert rfc5322_date(datetime(2024, 1, 1, 0, 0, 5)) == "Mon, 01 Jan 2024 00:00:05 +0000"
    west = datetime(2024, 7, 4, 23, 59, 59, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert rfc5322_date(west) == "Thu, 04 Jul 2024 23:59:59 -0330"
    assert parsedate_to_datetime(rfc5322_date(west)) == west


def test_message_ids_are_unique_and_well_formed() -> None:
    ids = {make_message_id("acme.example") for _ in range(10_000)}
    assert len(ids) == 10_000
    for value in list(ids)[:100]:
        assert re.fullmatch(r"<[a-z2-7]{26}@acme\.example>", value)
    assert parse(build(message_id=make_message_id("xn--bcher-kva.example")))["Message-ID"].endswith(
        "@xn--bcher-kva.example>"
    )
    with pytest.raises(HeaderInjectionError):
        make_message_id("acme.example\r\nBcc: x")
    with pytest.raises(ValidationError):
        make_message_id("bücher.example")


def test_empty_subject_is_an_empty_header() -> None:
    raw = build(subject="")
    assert b"\r\nSubject:\r\n" in raw
    assert str(parse(raw)["Subject"]) == ""


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError):
        build(subject="bad \udc80")
    with pytest.raises(ValidationError):
        build(text="bad \udc80")


# --- properties -----------------------------------------------------------------------------

# Any character except controls, line separators and lone surrogates.
printable = st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"], blacklist_characters="\x85")
names = st.text(printable, max_size=120)
subjects = st.text(printable, min_size=1, max_size=300)
bodies = st.text(st.characters(blacklist_categories=["Cs"]), max_size=3000)


@SETTINGS
@given(name=names, subject=subjects, text=bodies, html=st.none() | bodies)
def test_any_name_subject_and_body_round_trip(name: str, subject: str, text: str, html: str | None) -> None:
    to = Address("customer@example.com", name)
    raw = build(to=to, subject=subject, text=text, html=html)
    message = parse(raw)
    assert [a.addr_spec for a in message["To"].addresses] == ["customer@example.com"]
    assert [a.addr_spec for a in message["From"].addresses] == ["alice@acme.example"]
    assert "Bcc" not in message and "Cc" not in message
    expected_headers = ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type"]
    if html is None:
        expected_headers.append("Content-Transfer-Encoding")
    assert header_names(raw) == expected_headers
    assert str(message["Subject"]) == subject
    if name:
        assert display_name(raw) == name
    parsed = parse_message(raw)
    assert [m.address for m in parsed.to] == ["customer@example.com"]
    assert parsed.to[0].name.split() == name.split()  # mailcrm's parser normalises whitespace
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    if not expected.endswith("\n"):
        expected += "\n"
    plain = message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == expected
    for line in raw.split(b"\r\n"):
        assert len(line) <= 78


@SETTINGS
@given(name=st.text(max_size=40), subject=st.text(max_size=40))
def test_any_text_is_refused_or_reads_back_exactly(name: str, subject: str) -> None:
    try:
        raw = build(to=Address("customer@example.com", name), subject=subject)
    except HeaderInjectionError:
        assert re.search("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]", name + subject)
        return
    except ValidationError:  # lone surrogates
        assert re.search("[\ud800-\udfff]", name + subject)
        return
    message = parse(raw)
    assert len(message["To"].addresses) == 1
    assert "Bcc" not in message
    assert header_names(raw)[:6] == ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version"]
    if name:
        assert display_name(raw) == name


def test_building_costs_the_same_for_every_message() -> None:
    """Each message costs what the first did (no state that grows as a run goes on):
    8 times the messages take about 8 times as long. benchmarks/render_build.py measures
    the rate itself."""
    text = "Hi Somchai,\n\nThank you for choosing the seminar ticket.\n" * 10
    html = "<p>" + text.replace("\n", "<br>") + "</p>"

    numbers = itertools.count()  # every message to a new customer, as in a real run

    def build_many(count: int) -> None:
        for index in itertools.islice(numbers, count):
            build(to=Address(f"c{index}@example.com", f"Customer {index}"), text=text, html=html)

    assert_linear(lambda: build_many(50), lambda: build_many(50 * FACTOR))
