"""Parsing raw messages: the hand-built corpus, the stdlib's test messages, and unit cases."""

from __future__ import annotations

import gzip
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scaling import FACTOR, assert_linear

from mailcrm.domain.charsets import decode_text, decode_words, normalize_charset
from mailcrm.domain.classify import classify
from mailcrm.domain.html_text import html_to_text
from mailcrm.domain.messages import (
    Attachment,
    Mailbox,
    ParsedMessage,
    header_params,
    make_snippet,
    normalize_message_id,
    parse_mailboxes,
    parse_message,
    thread_key,
)

CORPUS = Path(__file__).parents[1] / "data" / "mail"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


def _read(name: str) -> bytes:
    data = (CORPUS / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def _parse_timed(raw: bytes) -> ParsedMessage:
    started = time.perf_counter()
    message = parse_message(raw)
    classify(message)
    assert time.perf_counter() - started < 1.0
    return message


def test_corpus_and_table_agree() -> None:
    files = {path.name for path in CORPUS.iterdir() if path.name.endswith((".eml", ".eml.gz"))}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message(name: str) -> None:
    expect = EXPECTED[name]
    message = _parse_timed(_read(name))
    result = classify(message)
    context = f"defects={message.defects} classification={result}"

    assert result.kind == expect["kind"], context
    if "malformed" in expect:
        assert message.malformed is expect["malformed"], context
    if "reason" in expect:
        assert result.reason == expect["reason"], context
    if "reason_startswith" in expect:
        assert result.reason.startswith(expect["reason_startswith"]), context
    if "subject" in expect:
        assert message.subject == expect["subject"]
    if "from_name" in expect:
        assert message.from_[0].name == expect["from_name"]
    if "from_address" in expect:
        assert message.from_ and all(m.address == expect["from_address"] for m in message.from_), (
            message.from_
        )
    if "to" in expect:
        assert [[m.address, m.name] for m in message.to] == expect["to"]
    for fragment in expect.get("text_contains", ()):
        assert fragment in message.text, message.text[:500]
    for fragment in expect.get("text_excludes", ()):
        assert fragment not in message.text
    if "text" in expect:
        assert message.text == expect["text"]
    if "text_length" in expect:
        assert len(message.text) == expect["text_length"]
    if "snippet" in expect:
        assert message.snippet == expect["snippet"]
    for fragment in expect.get("defects_contain", ()):
        assert any(fragment in defect for defect in message.defects), context
    if "attachments" in expect:
        found = [[a.filename, a.content_type, a.size] for a in message.attachments]
        assert found == expect["attachments"]
    if "bounced" in expect:
        assert [[b.address, b.hard, b.status] for b in result.bounced] == expect["bounced"], context
    if "original_message_id" in expect:
        assert result.original_message_id == expect["original_message_id"]
    if "noreply_sender" in expect:
        assert result.noreply_sender is expect["noreply_sender"]
    if "references" in expect:
        assert list(message.references) == expect["references"]
    if "in_reply_to" in expect:
        assert list(message.in_reply_to) == expect["in_reply_to"]
    if "thread_key" in expect:
        assert thread_key(message) == expect["thread_key"]
    if "date" in expect:
        assert message.date is None
    if "synthetic_id" in expect:
        assert message.message_id_synthetic is expect["synthetic_id"]
        assert message.message_id.endswith("@hash.mailcrm.invalid>")


def test_stdlib_test_messages_never_raise(stdlib_email_messages: list[Path]) -> None:
    """CPython's own malformed-MIME corpus: every message parses, within the time limit,
    into a record with its size and a Message-ID (a synthetic one where it has none)."""
    for path in stdlib_email_messages:
        raw = path.read_bytes()
        message = _parse_timed(raw)
        assert message.size == len(raw)
        assert message.message_id.startswith("<")


# --- unit cases -------------------------------------------------------------------------


def _crlf(text: str) -> bytes:
    return re.sub(r"(?<!\r)\n", "\r\n", text).encode("utf-8")


def _message(headers: str, body: str = "Hello\n", *, raw_body: bytes | None = None) -> ParsedMessage:
    data = _crlf(headers.strip("\n")) + b"\r\n\r\n"
    return parse_message(data + (raw_body if raw_body is not None else _crlf(body)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.org>", "<abc@example.org>"),
        ("  <abc@example.org> (comment)", "<abc@example.org>"),
        ("<abc@\r\n example.org>", "<abc@example.org>"),
        ("abc@example.org", "<abc@example.org>"),
        ("<CaseKept.123@Example.ORG>", "<CaseKept.123@Example.ORG>"),
        ("", None),
        ("not an id", None),
        ("<>", None),
        ("<@example.org>", None),
    ],
)
def test_normalize_message_id(value: str, expected: str | None) -> None:
    assert normalize_message_id(value) == expected


# Shapes every mail client agrees on; the answer matches email.utils.getaddresses.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b.example", [("a@b.example", "")]),
        (' "Chen, Alice" <Alice@B.Example> ', [("alice@b.example", "Chen, Alice")]),
        ("Alice <a@b.example>, Bob <b@b.example>", [("a@b.example", "Alice"), ("b@b.example", "Bob")]),
        ("bob@b.example (Bob Smith)", [("bob@b.example", "Bob Smith")]),
        ('"Quote \\" inside" <q@b.example>', [("q@b.example", 'Quote " inside')]),
        ("Undisclosed recipients:;", []),
        (
            "team: a@b.example, c@d.example;, e@f.example",
            [("a@b.example", ""), ("c@d.example", ""), ("e@f.example", "")],
        ),
        ("<@relay.example:u@b.example>", [("u@b.example", "")]),
        ("=?utf-8?q?J=C3=BCrgen?= <j@b.example>", [("j@b.example", "Jürgen")]),
        ('"=?utf-8?q?J=C3=BCrgen?=" <j@b.example>', [("j@b.example", "Jürgen")]),
        ("A (nick) <a@b.example>", [("a@b.example", "A")]),
        ("Ünïcode <ü@bücher.example>", [("ü@xn--bcher-kva.example", "Ünïcode")]),
        ("", []),
    ],
)
def test_parse_mailboxes_plain_shapes(value: str, expected: list[tuple[str, str]]) -> None:
    defects: list[str] = []
    found = parse_mailboxes(value, "to", None, defects)
    assert [(m.address, m.name) for m in found] == expected
    assert defects == []


# Shapes that parsers read differently (CVE-2023-27043 and relatives): no address, a defect.
@pytest.mark.parametrize(
    "value",
    [
        "alice@example.org)<bob@example.org>",
        "alice@example.org <bob@example.org>",
        "alice@example.org)(<bob@example.org>",
        "<a@b.example> trailing@c.example",
        "A <a@b.example> <c@d.example>",
        '"unterminated <a@b.example>',
        "(unclosed <a@b.example>",
        "a@b.example c@d.example",
        "<a@b.example",
        "a@b.example>",
        "x <a@b.example, c@d.example>",
    ],
)
def test_parse_mailboxes_refuses_ambiguous_shapes(value: str) -> None:
    defects: list[str] = []
    found = parse_mailboxes(value, "from", None, defects)
    assert all(mailbox.address is None for mailbox in found), found
    assert "bob@example.org" not in {m.address for m in found}
    assert any("ambiguous" in defect for defect in defects)


def test_cve_2023_27043_is_refused_in_a_message() -> None:
    message = _message("From: alice@example.org)<bob@example.org>\nTo: x@y.example\nSubject: s")
    assert message.from_ == (Mailbox(None, "alice@example.org"),)
    assert message.malformed


def test_unusable_and_missing_addresses_are_defects() -> None:
    defects: list[str] = []
    assert parse_mailboxes("x <not an address>", "to", None, defects) == [Mailbox(None, "x")]
    assert parse_mailboxes("John Smith", "to", None, defects) == [Mailbox(None, "John Smith")]
    assert parse_mailboxes('"a b"@c.example', "to", None, defects) == [Mailbox(None, "")]
    assert len(defects) == 3


def test_semicolon_separated_addresses_are_read_with_a_defect() -> None:
    defects: list[str] = []
    found = parse_mailboxes("a@b.example; c@d.example", "to", None, defects)
    assert [m.address for m in found] == ["a@b.example", "c@d.example"]
    assert defects == ["to: ';' used as an address separator"]


def test_repeated_to_headers_are_joined_and_conflicting_from_trusted_nowhere() -> None:
    message = _message("From: a@b.example\nTo: x@y.example\nTo: z@y.example\nSubject: s")
    assert [m.address for m in message.to] == ["x@y.example", "z@y.example"]
    assert "2 to headers" in message.defects
    message = _message("From: a@b.example\nFrom: a@b.example\nSubject: s")
    assert [m.address for m in message.from_] == ["a@b.example"]
    message = _message("From: ceo@team.example\nFrom: x@evil.example\nSubject: s")
    assert [m.address for m in message.from_] == [None, None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('attachment; filename="a b.pdf"', {"filename": "a b.pdf"}),
        ("attachment; filename=plain.txt; size=10", {"filename": "plain.txt", "size": "10"}),
        ("attachment; filename*=UTF-8''%E0%B8%81.pdf", {"filename": "ก.pdf"}),
        ("attachment; filename*=utf-8'th'%E0%B8%81.pdf", {"filename": "ก.pdf"}),
        ("attachment; filename*0*=gb2312''%B1%A8%BC%DB; filename*1=\".xls\"", {"filename": "报价.xls"}),
        ("attachment; filename=\"x.txt\"; filename*=UTF-8''%C3%A9.txt", {"filename": "é.txt"}),
        ('text/plain; charset="utf-8"; format=flowed', {"charset": "utf-8", "format": "flowed"}),
        ('attachment; filename="unterminated', {"filename": "unterminated"}),
    ],
)
def test_header_params(value: str, expected: dict[str, str]) -> None:
    assert header_params(value) == expected


def test_dates_become_aware_utc() -> None:
    message = _message("From: a@b.example\nDate: Tue, 04 Jun 2024 09:30:00 +0700\nSubject: s")
    assert message.date == datetime(2024, 6, 4, 2, 30, tzinfo=UTC)
    message = _message("From: a@b.example\nDate: Tue, 04 Jun 2024 09:30:00 -0000\nSubject: s")
    assert message.date == datetime(2024, 6, 4, 9, 30, tzinfo=UTC)
    for bad in ("Tue, 32 Jun 2024 09:30:00 +0000", "1 Jan 99999 00:00 +9999", "yesterday"):
        message = _message(f"From: a@b.example\nDate: {bad}\nSubject: s")
        assert message.date is None
        assert any(defect.startswith("unparseable Date") for defect in message.defects)


def test_references_are_ordered_unique_and_thread_key_prefers_the_root() -> None:
    message = _message(
        "From: a@b.example\nMessage-ID: <m3@x>\nIn-Reply-To: <m2@x> (Bob's message)\n"
        "References: <m1@x>\n <m2@x> <m1@x>"
    )
    assert message.references == ("<m1@x>", "<m2@x>")
    assert message.in_reply_to == ("<m2@x>",)
    assert thread_key(message) == "<m1@x>"
    alone = _message("From: a@b.example\nMessage-ID: <solo@x>")
    assert thread_key(alone) == "<solo@x>"
    reply = _message("From: a@b.example\nMessage-ID: <r@x>\nIn-Reply-To: <p@x>")
    assert thread_key(reply) == "<p@x>"


def test_long_reference_chains_keep_the_root_and_the_latest() -> None:
    chain = " ".join(f"<r{index}@x>" for index in range(1000))
    message = _message(f"From: a@b.example\nReferences: {chain}")
    assert len(message.references) == 256
    assert message.references[0] == "<r0@x>"
    assert message.references[-1] == "<r999@x>"


def test_synthetic_message_id_is_stable_across_line_endings_and_refolding() -> None:
    date = b"Date: Mon, 3 Jun 2024 10:00:00 +0000"
    crlf = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: one two\r\n" + date + b"\r\n\r\nBody\r\n"
    lf = b"From: a@b.example\nTo: c@d.example\nSubject: one\n two\n" + date + b"\n\nBody\n"
    first, second = parse_message(crlf), parse_message(lf)
    assert first.message_id_synthetic and second.message_id_synthetic
    assert first.message_id == second.message_id
    assert first.message_id.startswith("<") and first.message_id.endswith("@hash.mailcrm.invalid>")
    other = parse_message(crlf.replace(b"Body", b"Other"))
    assert other.message_id != first.message_id


def test_subject_control_characters_become_spaces() -> None:
    message = _message("From: a@b.example\nSubject: =?utf-8?q?line=0Abreak=09tab=00nul?=")
    assert message.subject == "line break tab nul"


def test_snippet_drops_quotes_signature_and_reply_header() -> None:
    text = "Hi Bob,\n\nYes, Friday works.\n\nOn Mon, 3 Jun 2024, Alice wrote:\n> Does Friday work?\n-- \nBob"
    assert make_snippet(text) == "Hi Bob, Yes, Friday works."
    assert make_snippet("> only a quote") == "> only a quote"
    long = make_snippet("word " * 100)
    assert len(long) <= 200 and long.endswith("…")
    outlook = "Sounds good.\n\n-----Original Message-----\nFrom: Alice\nSent: Monday"
    assert make_snippet(outlook) == "Sounds good."


def test_forwarded_message_is_an_attachment_and_its_id_is_kept() -> None:
    inner = "From: c@d.example\r\nSubject: inner\r\nMessage-ID: <inner@d.example>\r\n\r\nInner body\r\n"
    body = (
        "--fw\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n--fw\r\nContent-Type: message/rfc822\r\n"
        f'Content-Disposition: attachment; filename="fwd.eml"\r\n\r\n{inner}--fw--\r\n'
    )
    message = _message('From: a@b.example\nContent-Type: multipart/mixed; boundary="fw"', body)
    assert message.text == "See below."
    assert message.attachments == (Attachment("fwd.eml", "message/rfc822", len(inner) - 2),)
    assert message.enclosed_message_id == "<inner@d.example>"


def test_base64_encoded_forwarded_message_is_read() -> None:
    import base64

    inner = b"Message-ID: <b64@d.example>\r\nSubject: x\r\n\r\nbody\r\n"
    body = (
        "--fw\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--fw\r\nContent-Type: message/rfc822\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{base64.b64encode(inner).decode()}\r\n--fw--\r\n"
    )
    message = _message('From: a@b.example\nContent-Type: multipart/mixed; boundary="fw"', body)
    assert message.enclosed_message_id == "<b64@d.example>"
    assert message.attachments[0].size == len(inner)


def test_inline_text_parts_are_joined_and_html_is_a_fallback_only() -> None:
    body = (
        "--m\r\nContent-Type: text/plain\r\n\r\nFirst.\r\n"
        "--m\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        "--m\r\nContent-Type: text/plain\r\n\r\nSecond.\r\n"
        "--m\r\nContent-Type: text/html\r\n\r\n<p>HTML twin</p>\r\n--m--\r\n"
    )
    message = _message('From: a@b.example\nContent-Type: multipart/mixed; boundary="m"', body)
    assert message.text == "First.\n\nSecond."
    assert message.attachments == (Attachment(None, "image/png", 8, inline=True),)


def test_body_text_is_capped_and_a_cut_multibyte_character_is_not_a_defect() -> None:
    raw_body = ("ก" * 300_000).encode("utf-8")
    message = _message("From: a@b.example\nContent-Type: text/plain; charset=utf-8", raw_body=raw_body)
    assert len(message.text) == 256 * 1024
    assert set(message.text) == {"ก"}
    assert not any("utf-8" in defect for defect in message.defects)


def test_header_without_blank_line_and_continuation_first() -> None:
    message = parse_message(b" folded first\r\nFrom: a@b.example\r\nnot a header line\r\nmore body\r\n")
    assert message.from_[0].address == "a@b.example"
    assert message.text == "not a header line\nmore body"
    assert "message: continuation line before the first header" in message.defects


def test_folded_header_lines_that_lost_their_indentation_stay_in_the_header() -> None:
    # Copies of notices sometimes lose the leading whitespace of folded lines; the header
    # block still ends at the blank line, so the Content-Type and its boundary are kept.
    raw = (
        b"Received: from a.example\n"
        b"by b.example; Sat, 4 Aug 2018 05:32:32 +0000\n"
        b"From: Microsoft Outlook <postmaster@outlook.example>\n"
        b"To: <kijitora@example.com>\n"
        b"Subject: Undeliverable: Nyaan\n"
        b"Content-Type: multipart/report; report-type=delivery-status;\n"
        b'boundary="b1"\n'
        b"MIME-Version: 1.0\n"
        b"\n"
        b"--b1\nContent-Type: text/plain\n\nYour message couldn't be delivered.\n"
        b"--b1\nContent-Type: message/delivery-status\n\n"
        b"Reporting-MTA: dns;mx.example\n\n"
        b"Final-Recipient: rfc822;azumakuniyuki@example.ne.jp\nAction: failed\nStatus: 5.1.1\n"
        b"--b1--\n"
    )
    message = parse_message(raw)
    assert message.from_[0].address == "postmaster@outlook.example"
    assert message.subject == "Undeliverable: Nyaan"
    assert message.content_type == "multipart/report"
    assert "message: folded header line without leading whitespace" in message.defects
    verdict = classify(message)
    bounced = [(b.address, b.reason.value) for b in verdict.bounced]
    assert bounced == [("azumakuniyuki@example.ne.jp", "userunknown")]


def test_body_lines_after_a_missing_blank_line_are_not_taken_for_folded_headers() -> None:
    message = parse_message(b"From: a@b.example\nHello Bob,\nPrice: 10 EUR\nthanks\n")
    assert message.from_[0].address == "a@b.example"
    assert message.text == "Hello Bob,\nPrice: 10 EUR\nthanks"
    assert "message: no blank line between header and body" in message.defects


def test_many_unindented_folds_parse_in_linear_time() -> None:
    def raw(count: int) -> bytes:
        block = b"".join(b"X-H%d: v;\nparam%d=1\n" % (n, n) for n in range(count))
        return b"From: a@b.example\n" + block + b"\nbody\n"

    small, large = raw(20000 // FACTOR), raw(20000)
    assert parse_message(large).text == "body"
    assert_linear(lambda: parse_message(small), lambda: parse_message(large))


def test_mbox_from_line_is_skipped() -> None:
    message = parse_message(
        b"From alice@b.example Mon Jun  3 10:00:00 2024\nFrom: a@b.example\nSubject: s\n\nbody\n"
    )
    assert message.subject == "s"
    assert message.from_[0].address == "a@b.example"


def test_arbitrary_junk_never_raises() -> None:
    for raw in (
        b"",
        b"\n",
        b"\r\n\r\n",
        b":",
        b"\xff" * 100,
        b"From: \x00\x00",
        b"--\n--\n",
        b"Content-Type: multipart/x\n\n",
    ):
        message = parse_message(raw)
        assert message.size == len(raw)
        classify(message)


# --- charsets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("GB2312", "gb18030"),
        ("gbk", "gb18030"),
        ("big5", "big5hkscs"),
        ("TIS-620", "cp874"),
        ("windows-874", "cp874"),
        ("ks_c_5601-1987", "cp949"),
        ("Shift_JIS", "cp932"),
        ('"iso-8859-1"', "cp1252"),
        ("us-ascii", "cp1252"),
        ("utf-8*en", "utf-8"),
        ("koi8-r", "koi8-r"),
        ("x-unknown", None),
        ("base64", None),
        ("unicode_escape", None),
        ("rot13", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_charset(label: str | None, codec: str | None) -> None:
    assert normalize_charset(label) == codec


def test_decode_text_fallbacks() -> None:
    assert decode_text("Grüße".encode(), "iso-8859-1") == ("Grüße", None)  # UTF-8 under a Latin-1 label
    assert decode_text("Grüße".encode("latin-1"), "utf-8") == (
        "Grüße",
        "not utf-8 as declared; read as windows-1252",
    )
    assert decode_text("ก€".encode("cp874"), "tis-620") == ("ก€", None)
    assert decode_text(b"\x1b$B-!\x1b(B", "iso-2022-jp") == ("①", None)  # NEC row 13, as Windows writes it
    text, note = decode_text(b"caf\xc3\xa9 \xff", "utf-8")
    assert text == "café \ufffd" and note == "invalid utf-8 bytes replaced"
    assert decode_text(b"abc", "x-made-up") == ("abc", "unknown charset 'x-made-up'")
    assert decode_text("ไทย".encode()[:-1], "utf-8", final=False) == ("ไท", None)


def test_decode_words() -> None:
    assert decode_words("=?utf-8?q?a_b?= =?utf-8?q?c?=") == ("a bc", [])
    assert decode_words("x =?utf-8?b?w6k=?= y") == ("x é y", [])
    assert decode_words("=?UTF-8?B?4oI=?==?UTF-8?B?rA==?=") == ("€", [])  # split character
    assert decode_words("Gr\udcfc\udcdfe")[0] == "Grüße"  # raw Latin-1 bytes
    assert decode_words("=?gb2312?b?zfXG1A==?=") == ("王圃", [])
    text, notes = decode_words("=?nope?q?x?=")
    assert text == "x" and notes == ["encoded word: unknown charset 'nope'"]


# --- HTML ---------------------------------------------------------------------------------


def test_html_to_text() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><p>Hello <b>world</b>&nbsp;&amp; you</p>"
        "<ul><li>one</li><li>two</li></ul>Line<br>break<script>var a = 1 < 2;</script>"
        "<table><tr><td>a</td><td>b</td></tr></table><!-- c --> 3 &lt; 4 x<y &bogus;</body></html>"
    )
    assert html_to_text(html) == "Hello world & you\n\n• one\n• two\nLine\nbreak\n\na b\n\n3 < 4 x<y &bogus;"


def test_html_to_text_unclosed_head_does_not_hide_the_body() -> None:
    assert html_to_text("<head><title>x<body>visible") == "visible"


@pytest.mark.parametrize(
    ("unit", "repeats"),
    [("<a ", 100_000), ("</", 100_000), ("<!", 100_000), ("<?", 100_000), ("<!--", 100_000), ("<a", 100_000),
     ("<b><i>", 50_000)],
)  # fmt: skip
def test_html_to_text_is_linear_on_hostile_markup(unit: str, repeats: int) -> None:
    small, large = unit * (repeats // FACTOR), unit * repeats
    assert_linear(lambda: html_to_text(small), lambda: html_to_text(large))
