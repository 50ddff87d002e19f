"""Benchmark: `parse_message` (and `classify`) against the stdlib's modern email API.

Generates (seeded) a mix of realistic messages: 2 KB to 200 KB, plain, HTML-only and
multipart/alternative bodies, attachments with RFC 2231 names, Thai, Chinese,
Japanese, Russian, Central European and Western charsets in bodies and RFC 2047
headers, base64/quoted-printable/8bit transfer encodings, reply threads with
References chains, Received trails, and a few bounces, auto-replies and list mails.
All runs are on one core (one process). The peer baseline is what a caller would write
with the stdlib's modern API: `email.message_from_bytes(raw, policy=email.policy.default)`
then `get_body()`; it decodes no body text and no attachment, so it does less work. The
bare `compat32` parse (structure only, nothing decoded) is shown for reference.

    python benchmarks/parse_messages.py [--count N] [--seed N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import gc
import json
import quopri
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import compat32
from email.utils import format_datetime

from mailcrm.domain.classify import classify
from mailcrm.domain.messages import parse_message

SEED = 20240611
TARGET_RATE = 2000  # messages/s on one core for the typical mix

SALES = (
    ("Alice Chen", "alice@team.example"),
    ("Bob Meyer", "bob@team.example"),
    ("ชัยวัฒน์ ศรีสุข", "chai@team.example"),
)
TEXTS = {
    "en": "Thanks for the call today. As discussed, the quote for the annual licence is attached and valid "
    "until the end of the month. Let me know if the delivery date works for your team.",
    "de": "Vielen Dank für das Gespräch. Wie besprochen finden Sie das Angebot für die Jahreslizenz im "
    "Anhang; es gilt bis Monatsende. Grüße aus München, auch an Frau Müller.",
    "cs": "Děkuji za dnešní hovor. Jak jsme se domluvili, v příloze je nabídka na roční licenci, platná "
    "do konce měsíce. Dejte mi vědět, zda vám termín dodání vyhovuje.",
    "ru": "Спасибо за звонок. Как договорились, коммерческое предложение на годовую лицензию во вложении, "
    "оно действует до конца месяца. Сообщите, подходит ли срок поставки.",
    "th": "ขอบคุณสำหรับการโทรวันนี้ ตามที่ตกลงกัน ใบเสนอราคาสำหรับใบอนุญาตรายปีแนบมาด้วย "
    "ใช้ได้ถึงสิ้นเดือน กรุณาแจ้งว่าวันส่งมอบสะดวกสำหรับทีมของคุณหรือไม่",
    "zh": "感谢您今天的来电。如我们所讨论的，年度许可证的报价已附上，有效期至本月底。"
    "请告诉我交货日期是否适合贵团队。",
    "tw": "感謝您今天的來電。如我們所討論的，年度授權的報價已附上，有效期至本月底。"
    "請告訴我交貨日期是否適合貴團隊。",
    "ja": "本日はお電話ありがとうございました。お話しした通り、年間ライセンスのお見積りを添付いたします。"
    "今月末まで有効です。納期がご都合に合うかお知らせください。",
    "fa": "از تماس امروز شما سپاسگزارم. همان‌طور که صحبت شد، پیش‌فاکتور مجوز سالانه پیوست است و تا پایان ماه "
    "معتبر است.",
    "km": "សូមអរគុណសម្រាប់ការហៅទូរស័ព្ទថ្ងៃនេះ។ តម្លៃសម្រាប់អាជ្ញាប័ណ្ណប្រចាំឆ្នាំត្រូវបានភ្ជាប់មកជាមួយ។",
}
# (language, body charset, header charset, weight)
CHARSETS = (
    ("en", "us-ascii", "us-ascii", 18),
    ("en", "utf-8", "utf-8", 12),
    ("de", "iso-8859-1", "iso-8859-1", 8),
    ("de", "utf-8", "utf-8", 6),
    ("cs", "iso-8859-2", "iso-8859-2", 4),
    ("ru", "koi8-r", "koi8-r", 3),
    ("ru", "windows-1251", "windows-1251", 3),
    ("th", "tis-620", "tis-620", 6),
    ("th", "utf-8", "utf-8", 8),
    ("zh", "gb2312", "gb2312", 5),
    ("zh", "gbk", "gbk", 2),
    ("tw", "big5", "big5", 3),
    ("ja", "iso-2022-jp", "iso-2022-jp", 4),
    ("ja", "shift_jis", "iso-2022-jp", 2),
    ("fa", "utf-8", "utf-8", 4),
    ("km", "utf-8", "utf-8", 3),
)
SUBJECTS = {
    "en": "Quote for the annual licence",
    "de": "Angebot für die Jahreslizenz – Grüße",
    "cs": "Nabídka na roční licenci",
    "ru": "Коммерческое предложение",
    "th": "ใบเสนอราคาใบอนุญาตรายปี",
    "zh": "年度许可证报价",
    "tw": "年度授權報價",
    "ja": "年間ライセンスのお見積り",
    "fa": "پیش‌فاکتور مجوز سالانه",
    "km": "តម្លៃអាជ្ញាប័ណ្ណ",
}
NAMES = {
    "en": "John Smith",
    "de": "Jürgen Weiß",
    "cs": "Jiří Dvořák",
    "ru": "Иван Петров",
    "th": "สมชาย ใจดี",
    "zh": "王伟",
    "tw": "陳志明",
    "ja": "山田太郎",
    "fa": "نگار رضایی",
    "km": "សុខ ដារ៉ា",
}
FILENAMES = ("quote.pdf", "Angebot_März.pdf", "ใบเสนอราคา.pdf", "报价单.xlsx", "見積書.pdf", "photo.jpg")


def encoded_words(text: str, charset: str) -> str:
    """RFC 2047 B-encoding in words of at most 45 bytes, never splitting a character."""
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    if text.isascii():
        return text
    words: list[str] = []
    chunk = ""
    for char in text:
        if chunk and len((chunk + char).encode(charset)) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(
        f"=?{charset}?B?{base64.b64encode(word.encode(charset)).decode('ascii')}?=" for word in words
    )


def encode_body(text: str, charset: str, rnd: random.Random) -> tuple[str, bytes]:
    data = text.replace("\n", "\r\n").encode(charset, "replace")
    if data.isascii() and charset != "iso-2022-jp":
        return "7bit", data
    choice = rnd.random()
    if charset == "iso-2022-jp":
        return "7bit", data
    if choice < 0.45:
        return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
    if choice < 0.8:
        encoded = quopri.encodestring(text.encode(charset, "replace"))
        return "quoted-printable", encoded.replace(b"\n", b"\r\n")
    return "8bit", data


def body_text(lang: str, size: int, rnd: random.Random, quote: bool) -> str:
    base = TEXTS[lang]
    paragraphs = [f"{NAMES[lang]},", ""]
    while sum(len(p) for p in paragraphs) < size:
        paragraphs.append(base)
        paragraphs.append("")
    paragraphs += ["-- ", SALES[0][0], "Sales, Team Example", "+66 2 123 4567"]
    if quote:
        paragraphs += ["", "On Mon, 3 Jun 2024 at 10:00, customer wrote:"]
        paragraphs += [f"> {line}" for line in TEXTS[lang][:400].split("。")]
    return "\n".join(paragraphs)


def html_of(text: str) -> str:
    rows = "".join(
        f'<tr><td style="padding:8px 16px;font-family:Arial,sans-serif;font-size:14px;color:#333">'
        f'<p style="margin:0 0 12px">{line.replace("&", "&amp;").replace("<", "&lt;")}</p></td></tr>\n'
        for line in text.split("\n")
        if line.strip()
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>td{line-height:1.4}'
        ".btn{background:#0a66c2}</style></head><body>"
        '<table width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:640px">'
        f'{rows}</table><!-- tracking --><img src="https://t.example/o.gif" width="1" height="1">'
        "</body></html>"
    )


def headers_of(rnd: random.Random, lang: str, header_charset: str, index: int, when: datetime) -> list[str]:
    customer = f"customer{rnd.randrange(400)}@client{rnd.randrange(60)}.example"
    name, address = rnd.choice(SALES)
    inbound = rnd.random() < 0.6
    sender = f"{encoded_words(NAMES[lang], header_charset)} <{customer}>" if inbound else None
    mine = f"{encoded_words(name, 'utf-8')} <{address}>"
    subject = SUBJECTS[lang]
    thread = rnd.random() < 0.5
    lines = [
        f"Return-Path: <{customer if inbound else address}>",
        *(
            f"Received: from mx{hop}.client.example (mx{hop}.client.example [192.0.2.{hop}])\r\n"
            f"\tby mx.team.example with ESMTPS id {rnd.getrandbits(48):x}\r\n"
            f"\tfor <{address}>; {format_datetime(when)}"
            for hop in range(rnd.randrange(2, 7))
        ),
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=client.example; s=s1;\r\n"
        f"\th=from:to:subject:date:message-id; bh={base64.b64encode(rnd.randbytes(32)).decode()};\r\n"
        f"\tb={base64.b64encode(rnd.randbytes(128)).decode()}",
        f"From: {sender if inbound else mine}",
        f"To: {mine if inbound else sender or customer}",
    ]
    if rnd.random() < 0.3:
        lines.append(f'Cc: "Support, Team" <support@team.example>, {customer.replace("customer", "cc")}')
    prefix = "Re: " if thread else ""
    lines.append(f"Subject: {prefix}{encoded_words(subject, header_charset)}")
    lines.append(f"Date: {format_datetime(when.astimezone(UTC))}")
    lines.append(f"Message-ID: <{index}.{rnd.getrandbits(64):x}@mail.example>")
    if thread:
        chain = [f"<{rnd.getrandbits(40):x}@mail.example>" for _ in range(rnd.randrange(1, 20))]
        lines.append(f"In-Reply-To: {chain[-1]}")
        lines.append("References: " + "\r\n ".join(chain))
    lines += ["MIME-Version: 1.0", "X-Mailer: Example Mail 1.0"]
    return lines


def leaf(content_type: str, charset: str | None, text: str, rnd: random.Random) -> bytes:
    encoding, data = encode_body(text, charset or "utf-8", rnd)
    header = f"Content-Type: {content_type}" + (f'; charset="{charset}"' if charset else "")
    return f"{header}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode() + data


def attachment(rnd: random.Random, size: int) -> bytes:
    name = rnd.choice(FILENAMES)
    data = rnd.randbytes(size)
    if name.isascii():
        disposition = f'attachment; filename="{name}"'
    else:
        quoted = "".join(f"%{byte:02X}" for byte in name.encode("utf-8"))
        disposition = f"attachment; filename*=utf-8''{quoted}"
    kind = "image/jpeg" if name.endswith(".jpg") else "application/octet-stream"
    return (
        f'Content-Type: {kind}; name="{name if name.isascii() else "file"}"\r\n'
        f"Content-Disposition: {disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
    )


def multipart(subtype: str, parts: Sequence[bytes], rnd: random.Random) -> bytes:
    boundary = f"=_b{rnd.getrandbits(64):x}"
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\nA MIME message.\r\n'.encode()]
    for part in parts:
        out.append(f"--{boundary}\r\n".encode() + part + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def automated(rnd: random.Random, index: int, when: datetime) -> bytes:
    kind = rnd.choice(("bounce", "auto", "list"))
    date = format_datetime(when)
    if kind == "bounce":
        boundary = f"dsn{index}"
        return (
            "From: Mail Delivery System <MAILER-DAEMON@mx.team.example>\r\nTo: alice@team.example\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\n"
            f"Message-ID: <dsn{index}@mx.team.example>\r\nAuto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n"
            f"<gone{index}@client.example>: host mx.client.example said: 550 5.1.1 User unknown\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.team.example\r\n\r\n"
            f"Final-Recipient: rfc822; gone{index}@client.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"Message-ID: <orig{index}@team.example>\r\n"
            f"Subject: Quote\r\n\r\n--{boundary}--\r\n"
        ).encode()
    if kind == "auto":
        return (
            f"From: Customer <customer{index % 400}@client.example>\r\nTo: alice@team.example\r\n"
            f"Subject: Automatic reply: Quote\r\nDate: {date}\r\nMessage-ID: <auto{index}@client.example>\r\n"
            "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\nContent-Type: text/plain; "
            "charset=utf-8\r\n\r\nI am out of the office until Monday.\r\n"
        ).encode()
    return (
        f"From: News <news@vendor.example>\r\nTo: alice@team.example\r\nSubject: Monthly update\r\n"
        f"Date: {date}\r\nMessage-ID: <list{index}@vendor.example>\r\nList-Id: <news.vendor.example>\r\n"
        "List-Unsubscribe: <mailto:unsubscribe@vendor.example>\r\nPrecedence: bulk\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
    ).encode() + html_of(TEXTS["en"] * 20).encode()


def generate(count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    languages = [entry for entry in CHARSETS for _ in range(entry[3])]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    messages: list[bytes] = []
    for index in range(count):
        when = start + timedelta(minutes=7 * index)
        if rnd.random() < 0.05:
            # Real automated mail carries the same Received/DKIM trail as any other.
            lines = headers_of(rnd, "en", "us-ascii", index, when)
            trail = "".join(f"{line}\r\n" for line in lines if line.startswith(("Received:", "DKIM-")))
            messages.append(trail.encode() + automated(rnd, index, when))
            continue
        lang, charset, header_charset, _ = rnd.choice(languages)
        head = "\r\n".join(headers_of(rnd, lang, header_charset, index, when)).encode() + b"\r\n"
        # Most mail is small; some carries big attachments.
        roll = rnd.random()
        text_size = rnd.randrange(300, 3000) if roll < 0.8 else rnd.randrange(3000, 9000)
        text = body_text(lang, text_size, rnd, quote=rnd.random() < 0.5)
        shape = rnd.random()
        if shape < 0.22:
            body = leaf("text/plain", charset, text, rnd)
        elif shape < 0.32:
            body = leaf("text/html", charset, html_of(text), rnd)
        else:
            body = multipart(
                "alternative",
                [leaf("text/plain", charset, text, rnd), leaf("text/html", charset, html_of(text), rnd)],
                rnd,
            )
        if shape >= 0.75:
            target = rnd.randrange(2_000, 195_000) if rnd.random() < 0.5 else rnd.randrange(2_000, 40_000)
            room = target - len(head) - len(body)  # base64 grows the attachment by about 4/3
            body = multipart("mixed", [body, attachment(rnd, max(200, room * 3 // 4 - 1000))], rnd)
        messages.append(head + body)
    return messages


def timed(function: Callable[[bytes], object], messages: Sequence[bytes], repeat: int) -> float:
    """Best wall time of `repeat` runs over all messages (best, since noise only adds)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        for raw in messages:
            function(raw)
        best = min(best, time.perf_counter() - started)
    return best


def stdlib_compat32(raw: bytes) -> object:
    return BytesParser(policy=compat32).parsebytes(raw)


def stdlib_baseline(raw: bytes) -> object:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return message.get_body()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    messages = generate(args.count, args.seed)
    total = sum(map(len, messages))
    sizes = sorted(map(len, messages))
    runs = {
        "parse_message": timed(parse_message, messages, args.repeat),
        "parse_message+classify": timed(lambda raw: classify(parse_message(raw)), messages, args.repeat),
        "stdlib default policy+get_body": timed(stdlib_baseline, messages, args.repeat),
        "stdlib compat32 parse only": timed(stdlib_compat32, messages, args.repeat),
    }
    rates = {
        name: {"msg_per_s": round(len(messages) / seconds), "mb_per_s": round(total / 1e6 / seconds, 1)}
        for name, seconds in runs.items()
    }
    ratio = runs["stdlib default policy+get_body"] / runs["parse_message"]
    rate = len(messages) / runs["parse_message"]
    shape = {
        "messages": len(messages),
        "megabytes": round(total / 1e6, 1),
        "min_kb": round(sizes[0] / 1000, 1),
        "median_kb": round(statistics.median(sizes) / 1000, 1),
        "max_kb": round(sizes[-1] / 1000, 1),
    }
    if args.json:
        print(json.dumps({**shape, "rates": rates, "speedup_vs_stdlib": round(ratio, 2)}))
        return 0
    print(
        f"{len(messages)} messages, {shape['megabytes']} MB "
        f"({shape['min_kb']}-{shape['max_kb']} KB, median {shape['median_kb']} KB), "
        f"best of {args.repeat}, one core"
    )
    for name, figures in rates.items():
        print(f"  {name:32} {figures['msg_per_s']:>7} msg/s {figures['mb_per_s']:>7} MB/s")
    print(f"  parse_message vs stdlib baseline: {ratio:.2f}x")
    print(f"  target {TARGET_RATE} msg/s: {'met' if rate >= TARGET_RATE else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
