"""A seeded, realistic sales mailbox for sync benchmarks: customers and raw messages.

`people(count)` gives the customers (mixed-script names, one or two addresses each);
`generate(count, customers)` yields raw RFC 5322 messages as a Maildir stores them
(LF line ends), in date order:

* sizes: most 2-20 KB; about 4% are 100-300 KB with PDF, spreadsheet or image
  attachments (RFC 2231 file names); `small=True` keeps every message at 1-4 KB;
* charsets: us-ascii, utf-8 (Thai, Chinese, Persian, Khmer, Japanese, German),
  iso-8859-1, windows-1252, gb2312, tis-620 and iso-2022-jp, in bodies (7bit, 8bit,
  quoted-printable, base64) and in RFC 2047 subjects and display names;
* about a third multipart/alternative with an HTML part;
* threads: replies carry In-Reply-To and a References chain of their conversation;
* about 70% from the known customers, 15% from unknown senders (they become leads,
  some write more than once), 10% outbound from the salesperson, and a few
  auto-replies, bounces (RFC 3464 reports) and list mails.

Every Message-ID is unique (it holds the corpus name and the message's index), so a
store that keeps one message per Message-ID must end with exactly `count` messages.
`write_maildir` drops the messages into a Maildir as an MDA would, owned by the mail
user, with sizes in the file names so the IMAP server need not read them to index.
"""

from __future__ import annotations

import base64
import binascii
import html
import os
import random
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

SEED = 20240705
SALES_ADDRESS = "sales@team.example"
SALES_NAME = "Alice Chen"
TEAM_DOMAIN = "team.example"
MAX_REFERENCES = 12
SPAN_DAYS = 730

# Sentences per language; bodies are random runs of them.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Thanks for the call today.",
        "As discussed, the quote for the annual licence is attached and valid until the end of the month.",
        "Let me know if the delivery date works for your team.",
        "We would like to order two more pallets of the jasmine rice before the holidays.",
        "Could you send the updated price list and the payment terms?",
        "Our warehouse in Chiang Mai can receive the goods on weekdays between 8 and 17.",
        "The invoice number is on the second page; please quote it with the payment.",
        "I have copied my colleague, who handles the logistics on our side.",
    ),
    "de": (
        "Vielen Dank für das freundliche Gespräch.",
        "Wie besprochen finden Sie das Angebot für die Jahreslizenz im Anhang; es gilt bis Monatsende.",
        "Bitte bestätigen Sie den Liefertermin – am besten bis Freitag.",
        "Grüße aus München, auch an Frau Müller und Herrn Weiß.",
        "Die Rechnung über 1.250 € geht Ihnen separat zu.",
        "Könnten Sie uns „die aktuellen Konditionen“ für Großabnehmer schicken?",
        "Für Rückfragen stehe ich Ihnen gern zur Verfügung.",
    ),
    "th": (
        "ขอบคุณสำหรับการโทรวันนี้",
        "ตามที่ตกลงกัน ใบเสนอราคาสำหรับใบอนุญาตรายปีแนบมาด้วย ใช้ได้ถึงสิ้นเดือน",
        "กรุณาแจ้งว่าวันส่งมอบสะดวกสำหรับทีมของคุณหรือไม่",
        "เราต้องการสั่งข้าวหอมมะลิเพิ่มอีกสองพาเลทก่อนวันหยุด",
        "รบกวนส่งรายการราคาล่าสุดและเงื่อนไขการชำระเงินด้วยครับ",
        "คลังสินค้าของเราที่เชียงใหม่รับสินค้าได้ในวันทำการ",
    ),
    "zh": (
        "感谢您今天的来电。",
        "如我们所讨论的，年度许可证的报价已附上，有效期至本月底。",
        "请告诉我交货日期是否适合贵团队。",
        "我们希望在假期前再订购两托盘茉莉香米。",
        "请发送最新的价格表和付款条件。",
        "发票号码在第二页，付款时请注明。",
    ),
    "fa": (
        "از تماس امروز شما سپاسگزارم.",
        "همان‌طور که صحبت شد، پیش‌فاکتور مجوز سالانه پیوست است و تا پایان ماه معتبر است.",
        "لطفاً تاریخ تحویل را تأیید کنید.",
        "ما می‌خواهیم قبل از تعطیلات دو پالت دیگر سفارش دهیم.",
        "لطفاً فهرست قیمت به‌روز و شرایط پرداخت را ارسال کنید.",
    ),
    "km": (
        "សូមអរគុណសម្រាប់ការហៅទូរស័ព្ទថ្ងៃនេះ។",
        "តម្លៃសម្រាប់អាជ្ញាប័ណ្ណប្រចាំឆ្នាំត្រូវបានភ្ជាប់មកជាមួយ។",
        "សូមប្រាប់ខ្ញុំថាតើកាលបរិច្ឆេទដឹកជញ្ជូនសមរម្យសម្រាប់ក្រុមរបស់អ្នកឬទេ។",
        "យើងចង់បញ្ជាទិញអង្ករម្លិះពីរប៉ាឡែតទៀត។",
    ),
    "ja": (
        "本日はお電話ありがとうございました。",
        "お話しした通り、年間ライセンスのお見積りを添付いたします。",
        "今月末まで有効です。",
        "納期がご都合に合うかお知らせください。",
        "最新の価格表とお支払い条件をお送りいただけますか。",
    ),
}
SUBJECTS: dict[str, tuple[str, ...]] = {
    "en": ("Quote for the annual licence", "Order follow-up", "Price list request", "Delivery schedule"),
    "de": ("Angebot für die Jahreslizenz", "Rückfrage zur Bestellung", "Lieferung – Termin bestätigt"),
    "th": ("ใบเสนอราคาใบอนุญาตรายปี", "ติดตามคำสั่งซื้อ", "ขอรายการราคา"),
    "zh": ("年度许可证报价", "订单跟进", "价格表请求"),
    "fa": ("پیش‌فاکتور مجوز سالانه", "پیگیری سفارش", "درخواست فهرست قیمت"),
    "km": ("តម្លៃអាជ្ញាប័ណ្ណ", "តាមដានការបញ្ជាទិញ"),
    "ja": ("年間ライセンスのお見積り", "ご注文の確認", "価格表のお願い"),
}
AUTO_PREFIX = {
    "en": "Automatic reply: ",
    "de": "Abwesenheitsnotiz: ",
    "th": "ตอบกลับอัตโนมัติ: ",
    "zh": "自动回复: ",
    "fa": "پاسخ خودکار: ",
    "km": "ការឆ្លើយតបស្វ័យប្រវត្តិ: ",
    "ja": "自動応答: ",
}
# (language, body charset, transfer encoding, weight)
CHARSETS: tuple[tuple[str, str, str, int], ...] = (
    ("en", "us-ascii", "7bit", 20),
    ("en", "utf-8", "quoted-printable", 6),
    ("de", "iso-8859-1", "quoted-printable", 8),
    ("de", "windows-1252", "quoted-printable", 5),
    ("de", "utf-8", "8bit", 4),
    ("th", "utf-8", "base64", 8),
    ("th", "tis-620", "8bit", 4),
    ("th", "tis-620", "base64", 2),
    ("zh", "utf-8", "base64", 6),
    ("zh", "gb2312", "base64", 5),
    ("fa", "utf-8", "base64", 5),
    ("fa", "utf-8", "quoted-printable", 2),
    ("km", "utf-8", "quoted-printable", 3),
    ("km", "utf-8", "base64", 2),
    ("ja", "iso-2022-jp", "7bit", 5),
    ("ja", "utf-8", "base64", 3),
)
# (given names, family names, pattern, languages the person writes in, domains)
CULTURES: tuple[tuple[tuple[str, ...], tuple[str, ...], str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Anna", "James", "Maria", "Lukas", "Sophie", "Daniel", "Laura", "Jonas", "Emma", "Noah"),
        ("Smith", "Johnson", "Brown", "García", "Rossi", "López", "Taylor"),
        "{first} {last}",
        ("en",),
        ("example.com", "mail.example", "corp.example.co.uk"),
    ),
    (
        ("Jürgen", "Sabine", "Klaus", "Anja", "Björn", "Käthe"),
        ("Müller", "Weiß", "Schröder", "Fischer", "Groß", "Köhler"),
        "{first} {last}",
        ("de", "en"),
        ("example.de", "web.example.at"),
    ),
    (
        ("สมชาย", "สุดา", "วิชัย", "มาลี", "ประเสริฐ", "กมลา", "ธนากร", "อรุณี"),
        ("ใจดี", "ศรีสุข", "วงศ์ไทย", "แสงทอง", "บุญมา", "สุวรรณ"),
        "{first} {last}",
        ("th", "th", "en"),
        ("example.co.th", "inbox.example.th"),
    ),
    (
        ("伟", "芳", "娜", "秀英", "敏", "静", "强", "磊"),
        ("王", "李", "张", "刘", "陈", "杨", "黄", "赵"),
        "{last}{first}",
        ("zh", "zh", "en"),
        ("example.cn", "mail.example.com.cn"),
    ),
    (
        ("علی", "زهرا", "محمد", "فاطمه", "رضا", "مریم", "حسین", "سارا"),
        ("رضایی", "محمدی", "حسینی", "کریمی", "احمدی", "موسوی"),
        "{first} {last}",
        ("fa", "en"),
        ("example.ir", "post.example.ir"),
    ),
    (
        ("សុខ", "ចាន់", "ដារ៉ា", "សុភា", "វណ្ណា", "ស្រីពៅ"),
        ("ហេង", "លី", "សេង", "គឹម", "ឈឹម", "ម៉ៅ"),
        "{last} {first}",
        ("km", "en"),
        ("example.com.kh", "mail.example.kh"),
    ),
    (
        ("太郎", "花子", "健", "由美", "翔", "さくら"),
        ("山田", "佐藤", "鈴木", "高橋", "田中"),
        "{last} {first}",
        ("ja", "en"),
        ("example.co.jp", "mail.example.jp"),
    ),
)
ATTACHMENTS = (
    ("application/pdf", "quote.pdf"),
    ("application/pdf", "Angebot_März.pdf"),
    ("application/pdf", "ใบเสนอราคา.pdf"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "报价单.xlsx"),
    ("application/pdf", "見積書.pdf"),
    ("image/jpeg", "photo.jpg"),
    ("image/png", "پیش‌فاکتور.png"),
)
ZONES = tuple(timezone(timedelta(minutes=m)) for m in (0, 60, 120, 210, 420, 480, 540, -300))
DKIM = (
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s1;\n"
    "\th=from:to:subject:date:message-id:mime-version:content-type;\n"
    "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n"
    "\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\n"
    "\t RAcDYOLAu1sJ7V7H3GmL0dQfKp5wHLuGP8dB3Dk4yS2W9Lhhyv9CvCq0Yl3Ek7Sa\n"
    "\t a2BSPc9kwMNWXvUf9wGqvkrwJz4cQNp1d1E3pJGA5p3DqzjmZ8r9RkH1sKzFQmEw=\n"
)


@dataclass(frozen=True, slots=True)
class Person:
    """A known customer: display name, addresses (the first is primary), languages."""

    name: str
    addresses: tuple[str, ...]
    languages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MailItem:
    raw: bytes  # LF line ends, as stored in a Maildir
    message_id: str
    kind: str  # customer, lead, outbound, auto_reply, bounce, list


@dataclass
class MaildirStats:
    messages: int = 0
    bytes: int = 0  # as stored (LF)
    imap_bytes: int = 0  # as served over IMAP (CRLF): the RFC822.SIZE total
    kinds: Counter[str] = field(default_factory=Counter)


def people(count: int, seed: int = SEED) -> list[Person]:
    """`count` customers; addresses are unique by index."""
    rng = random.Random(seed)
    result = []
    for index in range(count):
        given, family, pattern, languages, domains = rng.choice(CULTURES)
        name = pattern.format(first=rng.choice(given), last=rng.choice(family))
        addresses = [f"c{index}@{domains[index % len(domains)]}"]
        if rng.random() < 0.3:
            addresses.append(f"c{index}.work@{rng.choice(domains)}")
        result.append(Person(name, tuple(addresses), languages))
    return result


# --- encoding helpers ------------------------------------------------------------------


def _encoded_words(text: str, charset: str) -> str:
    """RFC 2047: Q for Latin charsets, B otherwise, in words of at most ~75 characters."""
    if text.isascii():
        return text
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    latin = charset in ("iso-8859-1", "windows-1252")
    words = []
    chunk = ""
    for char in text:
        candidate = chunk + char
        if len(candidate.encode(charset)) > (30 if latin else 42):
            words.append(chunk)
            chunk = char
        else:
            chunk = candidate
    if chunk:
        words.append(chunk)
    encoded = []
    for word in words:
        data = word.encode(charset)
        if latin:
            q = binascii.b2a_qp(data, header=True).decode("ascii").replace("?", "=3F")
            encoded.append(f"=?{charset}?Q?{q}?=")
        else:
            encoded.append(f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?=")
    return "\n ".join(encoded)


def _encode_lines(text: str, charset: str) -> bytes:
    # Line by line, so stateful charsets (iso-2022-jp) return to ASCII at every line end.
    return b"\n".join(line.encode(charset, "replace") for line in text.split("\n"))


def _transfer(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data)
    if cte == "quoted-printable":
        return binascii.b2a_qp(data, istext=True) + b"\n"
    return data + b"\n"


def _rfc2231(filename: str) -> str:
    if filename.isascii():
        return f'filename="{filename}"'
    return f"filename*=utf-8''{urllib.parse.quote(filename, safe='')}"


# --- the generator ---------------------------------------------------------------------


class _Generator:
    def __init__(self, customers: list[Person], *, seed: int, name: str, small: bool) -> None:
        self.rng = random.Random(f"{seed}:{name}")
        self.customers = customers
        self.name = name
        self.small = small
        self.threads: dict[int, tuple[str, tuple[str, ...], str]] = {}  # customer -> (last id, refs, subj)
        self.unknown = max(1, len(customers) // 2)
        self.words: dict[tuple[str, str], str] = {}
        self.by_language: dict[str, list[tuple[str, str, str, int]]] = {}
        for entry in CHARSETS:
            self.by_language.setdefault(entry[0], []).append(entry)
        self.sentence_bytes = {
            language: sum(len(s.encode("utf-8")) for s in sentences) / len(sentences)
            for language, sentences in SENTENCES.items()
        }

    def words_of(self, text: str, charset: str) -> str:
        key = (text, charset)
        found = self.words.get(key)
        if found is None:
            found = self.words[key] = _encoded_words(text, charset)
        return found

    def address(self, name: str, addr: str, charset: str) -> str:
        if not name:
            return addr
        if name.isascii():
            return f'"{name}" <{addr}>'
        return f"{self.words_of(name, charset)} <{addr}>"

    def charset_for(self, language: str) -> tuple[str, str]:
        options = self.by_language[language]
        _, charset, cte, _ = self.rng.choices(options, weights=[o[3] for o in options])[0]
        return charset, cte

    def text(self, language: str, target: int, greeting: str) -> str:
        sentences = SENTENCES[language]
        count = max(2, int(target / (self.sentence_bytes[language] + 1)))
        picked = self.rng.choices(sentences, k=count)
        lines = [greeting, ""]
        for start in range(0, count, 3):
            lines.append(" ".join(picked[start : start + 3]))
            if self.rng.random() < 0.25:
                lines.append("")
        lines += ["", "-- ", f"Ref. {self.rng.randrange(10**6, 10**7)}"]
        return "\n".join(lines)

    def body_size(self) -> int:
        if self.small:
            return self.rng.randrange(200, 1200)
        if self.rng.random() < 0.8:
            return self.rng.randrange(700, 4500)
        return self.rng.randrange(4000, 9000)

    def text_part(self, text: str, subtype: str, charset: str, cte: str) -> bytes:
        head = f"Content-Type: text/{subtype}; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
        return head.encode("ascii") + _transfer(_encode_lines(text, charset), cte)

    def html_of(self, text: str) -> str:
        paragraphs = "\n".join(
            f'<p style="font-family:Arial,sans-serif;font-size:14px">{html.escape(p)}</p>'
            for p in text.split("\n")
            if p
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><style>p{margin:0 0 8px}</style></head>\n'
            f"<body>\n<div>\n{paragraphs}\n</div>\n"
            '<table><tr><td><a href="https://team.example/">team.example</a></td></tr></table>\n'
            "</body></html>"
        )

    def body(self, language: str, greeting: str, *, html_share: float, attach: bool) -> tuple[str, bytes]:
        """(Content-Type header lines, body bytes) of a message."""
        charset, cte = self.charset_for(language)
        text = self.text(language, self.body_size(), greeting)
        boundary = f"=_b{self.rng.getrandbits(48):012x}"
        if self.rng.random() < html_share:
            alt = f"=_a{self.rng.getrandbits(48):012x}"
            html_cte = "quoted-printable" if cte in ("7bit", "8bit") else cte
            content = (
                f"--{alt}\n".encode()
                + self.text_part(text, "plain", charset, cte)
                + f"--{alt}\n".encode()
                + self.text_part(self.html_of(text), "html", charset, html_cte)
                + f"--{alt}--\n".encode()
            )
            head = f'Content-Type: multipart/alternative; boundary="{alt}"'
        else:
            content = _transfer(_encode_lines(text, charset), cte)
            head = f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}"
        if not attach:
            return head, content
        parts = [f"--{boundary}\n{head}\n\n".encode() + content]
        budget = self.rng.randrange(75_000, 220_000)
        pieces = self.rng.randrange(1, 4)
        for _ in range(pieces):
            mime, filename = self.rng.choice(ATTACHMENTS)
            data = self.rng.randbytes(budget // pieces)
            parts.append(
                f"--{boundary}\nContent-Type: {mime}\nContent-Disposition: attachment; {_rfc2231(filename)}\n"
                "Content-Transfer-Encoding: base64\n\n".encode()
                + base64.encodebytes(data)
            )
        return (
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
            b"".join(parts) + f"--{boundary}--\n".encode(),
        )

    def message(
        self,
        *,
        msgid: str,
        when: datetime,
        sender: str,
        to: str,
        subject: str,
        content_head: str,
        content: bytes,
        extra: Iterable[str] = (),
        domain: str,
    ) -> bytes:
        lines = [
            f"Return-Path: <{sender.rpartition('<')[2].rstrip('>')}>",
            f"Received: from mx.{domain} (mx.{domain} [192.0.2.{self.rng.randrange(1, 250)}])\n"
            f"\tby mail.{TEAM_DOMAIN} with ESMTPS id {self.rng.getrandbits(40):010x}\n"
            f"\tfor <{SALES_ADDRESS}>; {format_datetime(when)}",
        ]
        if self.rng.random() < 0.4:
            lines.append(DKIM.format(domain=domain).rstrip("\n"))
        lines += [
            f"Date: {format_datetime(when)}",
            f"From: {sender}",
            f"To: {to}",
            f"Subject: {subject}",
            f"Message-ID: {msgid}",
            *extra,
            "MIME-Version: 1.0",
            content_head,
        ]
        return ("\n".join(lines) + "\n\n").encode("utf-8") + content

    def msgid(self, index: int, domain: str) -> str:
        return f"<{self.name}.{index}.{self.rng.getrandbits(32):08x}@{domain}>"

    def one(self, index: int, when: datetime) -> MailItem:
        roll = self.rng.random()
        if roll < 0.70:
            return self.customer_mail(index, when)
        if roll < 0.85:
            return self.lead_mail(index, when)
        if roll < 0.95:
            return self.outbound_mail(index, when)
        if roll < 0.98:
            return self.auto_reply(index, when)
        if roll < 0.995:
            return self.bounce(index, when)
        return self.list_mail(index, when)

    def thread_headers(self, key: int, msgid: str, subject: str) -> tuple[str, list[str]]:
        """Continue the conversation of `key` (a reply) or start a new one."""
        previous = self.threads.get(key)
        extra: list[str] = []
        if previous is not None and self.rng.random() < 0.45:
            last, refs, subject = previous
            chain = (*refs, last)[-MAX_REFERENCES:]
            extra = [f"In-Reply-To: {last}", "References: " + "\n ".join(chain)]
            self.threads[key] = (msgid, chain, subject)
            return subject, extra
        self.threads[key] = (msgid, (), subject)
        return subject, extra

    def subject(self, language: str, charset: str, reply: bool) -> str:
        text = self.words_of(self.rng.choice(SUBJECTS[language]), charset)
        return f"{'Re: ' if reply else ''}{text} #{self.rng.randrange(1000, 99999)}"

    def customer_mail(self, index: int, when: datetime) -> MailItem:
        who = self.rng.randrange(len(self.customers))
        person = self.customers[who]
        address = self.rng.choice(person.addresses)
        language = self.rng.choice(person.languages)
        domain = address.partition("@")[2]
        msgid = self.msgid(index, domain)
        attach = not self.small and self.rng.random() < 0.04
        head, content = self.body(language, person.name + ",", html_share=0.35, attach=attach)
        charset = "utf-8" if language not in ("de", "en") else "iso-8859-1"
        fresh = self.subject(language, charset, False)
        subject, extra = self.thread_headers(who, msgid, fresh)
        if extra and not subject.startswith("Re: "):
            subject = "Re: " + subject
        if self.rng.random() < 0.1:
            other = self.customers[self.rng.randrange(len(self.customers))]
            extra.append(f"Cc: {self.address(other.name, other.addresses[0], charset)}")
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender=self.address(person.name, address, charset),
                to=self.address(SALES_NAME, SALES_ADDRESS, charset),
                subject=subject,
                content_head=head,
                content=content,
                extra=extra,
                domain=domain,
            ),
            msgid,
            "customer",
        )

    def lead_mail(self, index: int, when: datetime) -> MailItem:
        number = self.rng.randrange(self.unknown)
        given, family, pattern, languages, domains = CULTURES[number % len(CULTURES)]
        name = pattern.format(first=given[number % len(given)], last=family[number % len(family)])
        domain = f"prospect{number % 97}.{domains[number % len(domains)]}"
        address = f"p{number}@{domain}"
        language = languages[0]
        msgid = self.msgid(index, domain)
        attach = not self.small and self.rng.random() < 0.03
        head, content = self.body(language, "Hello,", html_share=0.5, attach=attach)
        charset = "utf-8"
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender=self.address(name, address, charset),
                to=SALES_ADDRESS,
                subject=self.subject(language, charset, False),
                content_head=head,
                content=content,
                domain=domain,
            ),
            msgid,
            "lead",
        )

    def outbound_mail(self, index: int, when: datetime) -> MailItem:
        who = self.rng.randrange(len(self.customers))
        person = self.customers[who]
        language = self.rng.choice(person.languages)
        msgid = self.msgid(index, TEAM_DOMAIN)
        attach = not self.small and self.rng.random() < 0.08
        head, content = self.body(language, f"Dear {person.name},", html_share=0.6, attach=attach)
        fresh = self.subject(language, "utf-8", False)
        subject, extra = self.thread_headers(who, msgid, fresh)
        if extra and not subject.startswith("Re: "):
            subject = "Re: " + subject
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender=self.address(SALES_NAME, SALES_ADDRESS, "utf-8"),
                to=self.address(person.name, person.addresses[0], "utf-8"),
                subject=subject,
                content_head=head,
                content=content,
                extra=[*extra, "X-Mailer: Thunderbird 115.5.0"],
                domain=TEAM_DOMAIN,
            ),
            msgid,
            "outbound",
        )

    def auto_reply(self, index: int, when: datetime) -> MailItem:
        person = self.customers[self.rng.randrange(len(self.customers))]
        language = person.languages[0]
        domain = person.addresses[0].partition("@")[2]
        msgid = self.msgid(index, domain)
        charset, cte = self.charset_for(language)
        text = self.text(language, 400, person.name)
        subject = self.words_of(AUTO_PREFIX[language] + SUBJECTS[language][0], charset)
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender=self.address(person.name, person.addresses[0], charset),
                to=SALES_ADDRESS,
                subject=subject,
                content_head=f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}",
                content=_transfer(_encode_lines(text, charset), cte),
                extra=["Auto-Submitted: auto-replied", "X-Autoreply: yes"],
                domain=domain,
            ),
            msgid,
            "auto_reply",
        )

    def bounce(self, index: int, when: datetime) -> MailItem:
        person = self.customers[self.rng.randrange(len(self.customers))]
        failed = person.addresses[-1]
        hard = self.rng.random() < 0.8
        status, action = ("5.1.1", "failed") if hard else ("4.4.7", "delayed")
        domain = f"mx.{TEAM_DOMAIN}"
        msgid = self.msgid(index, domain)
        original = f"<offer.{index}@{TEAM_DOMAIN}>"
        boundary = f"=_r{self.rng.getrandbits(48):012x}"
        diagnostic = "smtp; 550 5.1.1 user unknown" if hard else "smtp; 451 4.4.7 try again later"
        content = (
            f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n"
            "This is the mail system at host mx.team.example.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients.\n\n"
            f"<{failed}>: host mx.{failed.partition('@')[2]} said: 550 5.1.1 user unknown\n\n"
            f"--{boundary}\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; {domain}\nArrival-Date: {format_datetime(when)}\n\n"
            f"Final-Recipient: rfc822; {failed}\nOriginal-Recipient: rfc822;{failed}\n"
            f"Action: {action}\nStatus: {status}\nDiagnostic-Code: {diagnostic}\n\n"
            f"--{boundary}\nContent-Type: text/rfc822-headers\n\n"
            f"From: {SALES_ADDRESS}\nTo: {failed}\nSubject: Our offer\nMessage-ID: {original}\n\n"
            f"--{boundary}--\n"
        ).encode()
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender="Mail Delivery System <MAILER-DAEMON@mx.team.example>",
                to=SALES_ADDRESS,
                subject="Undelivered Mail Returned to Sender"
                if hard
                else "Delayed Mail (still being retried)",
                content_head=(
                    f'Content-Type: multipart/report; report-type=delivery-status;\n boundary="{boundary}"'
                ),
                content=content,
                extra=["Auto-Submitted: auto-replied"],
                domain=domain,
            ),
            msgid,
            "bounce",
        )

    def list_mail(self, index: int, when: datetime) -> MailItem:
        domain = self.rng.choice(("news.example", "shop.example"))
        msgid = self.msgid(index, domain)
        head, content = self.body("en", "Hello,", html_share=1.0, attach=False)
        return MailItem(
            self.message(
                msgid=msgid,
                when=when,
                sender=f"Newsletter <noreply@{domain}>",
                to=SALES_ADDRESS,
                subject="This week's offers",
                content_head=head,
                content=content,
                extra=[
                    f"List-Id: <offers.{domain}>",
                    f"List-Unsubscribe: <https://{domain}/u/{index}>",
                    "Precedence: bulk",
                ],
                domain=domain,
            ),
            msgid,
            "list",
        )


def generate(
    count: int,
    customers: list[Person],
    *,
    seed: int = SEED,
    name: str = "bench",
    small: bool = False,
    end: datetime | None = None,
) -> Iterator[MailItem]:
    """`count` messages in date order over the last two years; `name` goes into every Message-ID."""
    if not customers:
        raise ValueError("the corpus needs at least one customer")
    generator = _Generator(customers, seed=seed, name=name, small=small)
    finish = end or datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
    step = timedelta(days=SPAN_DAYS) / max(count, 1)
    start = finish - timedelta(days=SPAN_DAYS)
    for index in range(count):
        zone = ZONES[index % len(ZONES)]
        yield generator.one(index, (start + step * index).astimezone(zone).replace(microsecond=0))


def single(index: int, customers: list[Person], *, name: str, seed: int = SEED) -> MailItem:
    """One small inbound message from a known customer (IDLE latency probes)."""
    generator = _Generator(customers, seed=seed + index, name=name, small=True)
    return generator.customer_mail(index, datetime.now(UTC).replace(microsecond=0))


def write_maildir(maildir: Path, items: Iterable[MailItem], *, uid: int, gid: int) -> MaildirStats:
    """Store messages in `maildir/cur` (unseen), owned by `uid`:`gid`, in the given order.

    File names carry increasing timestamps (the server assigns UIDs in that order) and
    the sizes (`S=` stored, `W=` with CRLF line ends), as Dovecot writes them itself.
    """
    stats = MaildirStats()
    for path in (maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
        path.mkdir(mode=0o700, exist_ok=True)
        os.chown(path, uid, gid)
    cur = maildir / "cur"
    first = 1_600_000_000
    pid = os.getpid()
    for number, item in enumerate(items):
        raw = item.raw
        imap_size = len(raw) + raw.count(b"\n")
        name = f"{first + number}.M{number:06d}P{pid}.bench,S={len(raw)},W={imap_size}:2,"
        fd = os.open(cur / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        stats.messages += 1
        stats.bytes += len(raw)
        stats.imap_bytes += imap_size
        stats.kinds[item.kind] += 1
    return stats
