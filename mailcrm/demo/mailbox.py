"""A seeded mailbox history for the demo salespeople, as real RFC 5322 messages.

The demo syncs this history over IMAP, so each message must look like what a mail
client or mail server writes: encoded-word names, base64/quoted-printable/8bit bodies,
HTML alternatives, In-Reply-To/References chains and an RFC 3464 report. Besides quote
threads in each customer's language it holds one of each case sync handles: a reply
from a new private address inside a thread, unknown prospects, a newsletter, an
out-of-office auto-reply and a hard bounce.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html import escape
from zoneinfo import ZoneInfo

from mailcrm.demo.data import PRODUCTS, SALESPEOPLE, DemoCustomer

INBOX = "INBOX"
SENT = "Sent"
SELLER_COMPANY = "Demo Sales Co., Ltd."
PRIVATE_DOMAIN = "post.example"
MAIL_SERVER = "mx.mail.example"


@dataclass(frozen=True)
class DemoMail:
    """One message as stored in a salesperson's mailbox."""

    mailbox: str  # the salesperson's address, which is also the IMAP login
    folder: str  # INBOX or Sent
    raw: bytes
    when: datetime
    seen: bool = True
    late: bool = False  # arrives only after the first sync, to show incremental sync


@dataclass(frozen=True)
class Templates:
    """One language's wording of a quote thread."""

    quote_subject: str
    quote: str
    reply: str
    follow_up: str
    confirm: str
    greeting: str  # with {name}
    closing: str


TEMPLATES: dict[str, Templates] = {
    "en": Templates(
        quote_subject="Quote: {product}",
        quote="Thank you for your interest. Our quote for {quantity} × {product} is {amount} {currency}, "
        "valid for 30 days.",
        reply="Thanks for the quote. Does the price include installation, and could you start next month?",
        follow_up="Yes, installation is included, and we can start in the first week of next month. "
        "Shall I send the order form?",
        confirm="Yes please, send the order form. Thank you!",
        greeting="Dear {name},",
        closing="Best regards,",
    ),
    "th": Templates(
        quote_subject="ใบเสนอราคา: {product}",
        quote="ขอบคุณที่สนใจสินค้าของเรา ขอเสนอราคา {product} จำนวน {quantity} ชุด ราคา {amount} {currency} "
        "ราคานี้มีผล 30 วัน",
        reply="ขอบคุณสำหรับใบเสนอราคา ราคานี้รวมค่าติดตั้งแล้วหรือไม่ และเริ่มงานเดือนหน้าได้ไหม",
        follow_up="ราคารวมค่าติดตั้งแล้ว และเราเริ่มงานได้ในสัปดาห์แรกของเดือนหน้า ต้องการให้ส่งใบสั่งซื้อไปเลยไหม",
        confirm="ได้เลย กรุณาส่งใบสั่งซื้อมา ขอบคุณมาก",
        greeting="เรียน คุณ{name}",
        closing="ขอแสดงความนับถือ",
    ),
    "zh-Hans": Templates(
        quote_subject="报价：{product}",
        quote="感谢您对我们产品的关注。{product} {quantity} 套的报价为 {amount} {currency}，有效期 30 天。",
        reply="谢谢您的报价。价格是否包含安装？下个月可以开始吗？",
        follow_up="价格已包含安装，我们可以安排在下个月第一周开始。需要我把订单发给您吗？",
        confirm="好的，请把订单发给我。谢谢！",
        greeting="{name}您好：",
        closing="此致\n敬礼",
    ),
    "zh-Hant": Templates(
        quote_subject="報價：{product}",
        quote="感謝您對我們產品的關注。{product} {quantity} 套的報價為 {amount} {currency}，有效期 30 天。",
        reply="謝謝您的報價。價格是否包含安裝？下個月可以開始嗎？",
        follow_up="價格已包含安裝，我們可以安排在下個月第一週開始。需要我把訂單寄給您嗎？",
        confirm="好的，請把訂單寄給我。謝謝！",
        greeting="{name}您好：",
        closing="敬祝 商祺",
    ),
    "fa": Templates(
        quote_subject="پیش‌فاکتور: {product}",
        quote="از توجه شما سپاسگزاریم. قیمت {quantity} عدد {product} برابر {amount} {currency} است "
        "و این پیشنهاد تا ۳۰ روز معتبر است.",
        reply="از پیش‌فاکتور متشکرم. آیا هزینهٔ نصب هم شامل می‌شود؟ می‌توانیم از ماه آینده شروع کنیم؟",
        follow_up="بله، هزینهٔ نصب شامل است و می‌توانیم هفتهٔ اول ماه آینده شروع کنیم. "
        "فرم سفارش را برایتان بفرستم؟",
        confirm="بله لطفاً فرم سفارش را بفرستید. ممنون.",
        greeting="{name} عزیز،",
        closing="با احترام",
    ),
    "km": Templates(
        quote_subject="សម្រង់តម្លៃ៖ {product}",
        quote="សូមអរគុណចំពោះការចាប់អារម្មណ៍។ តម្លៃសម្រាប់ {product} ចំនួន {quantity} គឺ {amount} {currency} "
        "ហើយមានសុពលភាព ៣០ ថ្ងៃ។",
        reply="សូមអរគុណសម្រាប់សម្រង់តម្លៃ។ តើតម្លៃនេះរួមបញ្ចូលការដំឡើងដែរឬទេ? តើអាចចាប់ផ្តើមខែក្រោយបានទេ?",
        follow_up="តម្លៃរួមបញ្ចូលការដំឡើងហើយ ហើយយើងអាចចាប់ផ្តើមនៅសប្តាហ៍ទីមួយនៃខែក្រោយ។ តើចង់ឲ្យខ្ញុំផ្ញើទម្រង់បញ្ជាទិញទេ?",
        confirm="សូមផ្ញើទម្រង់បញ្ជាទិញមក។ អរគុណច្រើន។",
        greeting="ជម្រាបសួរ {name}",
        closing="ដោយក្តីគោរព",
    ),
}

# How each language's mail is usually encoded, so the demo exercises every decoder.
_TRANSFER_ENCODING = {
    "en": None,
    "th": "base64",
    "zh-Hans": "base64",
    "zh-Hant": "8bit",
    "fa": "quoted-printable",
    "km": "8bit",
}

# The one-off cases: a reply from a private address and a seminar invitation (it bounces).
_PRIVATE = {
    "th": "ขอใช้อีเมลส่วนตัวนี้แทนนะครับ อีเมลบริษัทมีปัญหา ยืนยันสั่งซื้อตามใบเสนอราคา กรุณาส่งใบสั่งซื้อมาที่อีเมลนี้",
    "en": "Writing from my personal address, our company mail is down. We confirm the order as quoted: "
    "please send the order form here.",
}
_INVITATION = {
    "th": (
        "เชิญร่วมงานสัมมนา Energy 2026",
        "ขอเชิญร่วมงานสัมมนา Energy 2026 ที่กรุงเทพฯ พบกับผลิตภัณฑ์ใหม่และโปรโมชันพิเศษสำหรับลูกค้า",
    ),
    "en": (
        "Invitation: Energy 2026 seminar",
        "You are invited to the Energy 2026 seminar in Bangkok: new products and offers for customers.",
    ),
}


def _first_name(customer: DemoCustomer) -> str:
    if customer.language in ("en", "th"):
        return customer.name.split()[0]
    return customer.name


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _mailbox(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(name, local, domain)


@dataclass
class _Writer:
    """Builds messages with stable Message-IDs and collects them per mailbox and folder."""

    rng: random.Random
    mail: list[DemoMail] = field(default_factory=list)
    count: int = 0

    def message_id(self, sender: str) -> str:
        self.count += 1
        return f"<{self.rng.getrandbits(40):010x}.{self.count}@{_domain(sender)}>"

    def build(
        self,
        *,
        sender: tuple[str, str],
        to: Sequence[tuple[str, str]],
        subject: str,
        body: str,
        when: datetime,
        zone: str,
        encoding: str | None = None,
        html: bool = False,
        parent: EmailMessage | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = _mailbox(*sender)
        message["To"] = [_mailbox(*recipient) for recipient in to]
        message["Subject"] = subject
        message["Date"] = format_datetime(when.astimezone(ZoneInfo(zone)))
        message["Message-ID"] = self.message_id(sender[1])
        if parent is not None:
            parent_id = str(parent["Message-ID"])
            references = str(parent.get("References", "")).split()
            message["In-Reply-To"] = parent_id
            message["References"] = " ".join([*references, parent_id])
        for name, value in headers:
            message[name] = value
        message.set_content(body, cte=encoding)
        if html:
            paragraphs = "".join(f"<p>{escape(line)}</p>" for line in body.split("\n") if line)
            message.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html", cte=encoding)
        return message

    def store(
        self, mailbox: str, folder: str, message: EmailMessage, when: datetime, *, late: bool = False
    ) -> None:
        seen = folder == SENT or not late
        self.mail.append(DemoMail(mailbox, folder, message.as_bytes(policy=SMTP), when, seen, late))


def _quote_thread(
    writer: _Writer,
    customer: DemoCustomer,
    seller: tuple[str, str],
    start: datetime,
    *,
    auto_reply: bool = False,
    private_reply_at: datetime | None = None,
) -> None:
    """Quote, reply, follow-up and confirmation, in the customer's language."""
    rng = writer.rng
    words = TEMPLATES.get(customer.language, TEMPLATES["en"])
    encoding = _TRANSFER_ENCODING.get(customer.language)
    product, currency, price = rng.choice(PRODUCTS)
    quantity = rng.randint(1, 3)
    amount = f"{price * quantity / 100:,.2f}"
    address = customer.emails[0]
    them = (customer.name, address)
    seller_name, seller_address = seller
    greeting = words.greeting.format(name=_first_name(customer))
    signature = f"{words.closing}\n{seller_name}\n{SELLER_COMPANY}"
    subject = words.quote_subject.format(product=product)
    reply_subject = f"Re: {subject}"

    def ours(text: str) -> str:
        return f"{greeting}\n\n{text}\n\n{signature}\n"

    def theirs(text: str) -> str:
        return f"{text}\n\n{customer.name}\n"

    when = start
    quote = writer.build(
        sender=seller, to=[them], subject=subject, when=when, zone="Asia/Bangkok", encoding=encoding,
        html=True, body=ours(words.quote.format(product=product, quantity=quantity, amount=amount,
                                               currency=currency)),
    )  # fmt: skip
    writer.store(seller_address, SENT, quote, when)
    if auto_reply:
        when += timedelta(minutes=rng.randint(1, 4))
        away = writer.build(
            sender=them, to=[seller], subject=f"Automatic reply: {subject}", when=when,
            zone=customer.timezone, parent=quote,
            headers=[("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes")],
            body=f"I am out of the office until {(when + timedelta(days=4)):%d %B} with limited "
            "access to email. I will reply to your message when I am back.\n",
        )  # fmt: skip
        writer.store(seller_address, INBOX, away, when)
    if not auto_reply and private_reply_at is None and rng.random() < 0.15:
        return  # no answer yet: the quote stands alone on the timeline
    when += timedelta(hours=rng.randint(20, 60) + (96 if auto_reply else 0))
    reply = writer.build(
        sender=them, to=[seller], subject=reply_subject, when=when, zone=customer.timezone,
        encoding=encoding, parent=quote, body=theirs(words.reply),
    )  # fmt: skip
    writer.store(seller_address, INBOX, reply, when)
    when += timedelta(hours=rng.randint(2, 20))
    follow_up = writer.build(
        sender=seller, to=[them], subject=reply_subject, when=when, zone="Asia/Bangkok", encoding=encoding,
        html=True, parent=reply, body=ours(words.follow_up),
    )  # fmt: skip
    writer.store(seller_address, SENT, follow_up, when)
    if private_reply_at is not None:
        private = (customer.name, f"{address.partition('@')[0]}.private@{PRIVATE_DOMAIN}")
        text = _PRIVATE.get(customer.language, _PRIVATE["en"])
        late = writer.build(
            sender=private, to=[seller], subject=reply_subject, when=private_reply_at,
            zone=customer.timezone, encoding=encoding, parent=follow_up, body=theirs(text),
        )  # fmt: skip
        writer.store(seller_address, INBOX, late, private_reply_at, late=True)
    elif rng.random() < 0.6:
        when += timedelta(hours=rng.randint(3, 30))
        confirm = writer.build(
            sender=them, to=[seller], subject=reply_subject, when=when, zone=customer.timezone,
            encoding=encoding, parent=follow_up, body=theirs(words.confirm),
        )  # fmt: skip
        writer.store(seller_address, INBOX, confirm, when)


def _bounce(writer: _Writer, customer: DemoCustomer, seller: tuple[str, str], when: datetime) -> None:
    """An invitation to the customer's second address, and the server's report that it does not exist."""
    failed = customer.emails[-1]
    subject, text = _INVITATION.get(customer.language, _INVITATION["en"])
    invitation = writer.build(
        sender=seller, to=[(customer.name, failed)], subject=subject, when=when, zone="Asia/Bangkok",
        encoding=_TRANSFER_ENCODING.get(customer.language), body=f"{text}\n\n{seller[0]}\n{SELLER_COMPANY}\n",
    )  # fmt: skip
    writer.store(seller[1], SENT, invitation, when)
    when += timedelta(seconds=writer.rng.randint(20, 90))
    boundary = f"{writer.rng.getrandbits(48):012x}/{MAIL_SERVER}"
    original = str(invitation["Message-ID"])
    raw = (
        f"From: Mail Delivery System <MAILER-DAEMON@{MAIL_SERVER}>\r\n"
        f"To: {seller[1]}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(when)}\r\n"
        f"Message-ID: {writer.message_id('MAILER-DAEMON@' + MAIL_SERVER)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {MAIL_SERVER}.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"<{failed}>: host {MAIL_SERVER} said: 550 5.1.1 <{failed}>: Recipient address\r\n"
        "    rejected: User unknown in virtual mailbox table\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {MAIL_SERVER}\r\n"
        f"Arrival-Date: {format_datetime(when)}\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\n"
        f"Original-Recipient: rfc822;{failed}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Remote-MTA: dns; {MAIL_SERVER}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed}>: Recipient address rejected: User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: {seller[1]}\r\n"
        f"To: {failed}\r\n"
        f"Message-ID: {original}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode("ascii")
    writer.mail.append(DemoMail(seller[1], INBOX, raw, when))


def _prospects(writer: _Writer, alice: tuple[str, str], somchai: tuple[str, str], now: datetime) -> None:
    """Two unknown senders (they become leads) and a newsletter (it must not)."""
    rng = writer.rng
    when = now - timedelta(days=rng.randint(3, 6), hours=rng.randint(0, 8))
    grace = ("Grace Lee", "grace.lee@harbourfinch.example")
    ask = writer.build(
        sender=grace, to=[alice], subject="Request for quote: rooftop solar for our warehouse", when=when,
        zone="Europe/London", html=True,
        body="Hello,\n\nWe are looking at a 40 kW rooftop system for our warehouse in Chonburi. "
        "Could you send us a quote and a reference project?\n\nKind regards,\nGrace Lee\nHarbour & Finch\n",
    )  # fmt: skip
    writer.store(alice[1], INBOX, ask, when)
    when += timedelta(hours=rng.randint(2, 6))
    answer = writer.build(
        sender=alice, to=[grace], subject="Re: Request for quote: rooftop solar for our warehouse",
        when=when, zone="Asia/Bangkok", parent=ask,
        body="Dear Grace,\n\nThank you for reaching out. I will send the quote with two reference projects "
        f"by Friday.\n\nBest regards,\n{alice[0]}\n{SELLER_COMPANY}\n",
    )  # fmt: skip
    writer.store(alice[1], SENT, answer, when)

    when = now - timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 8))
    niran = ("นิรันดร์ ทองดี", "niran@chiangmai-resort.example")
    question = writer.build(
        sender=niran, to=[somchai], subject="สอบถามราคาโซลาร์เซลล์สำหรับรีสอร์ท", when=when,
        zone="Asia/Bangkok", encoding="base64",
        body="สวัสดีครับ\n\nรีสอร์ทของเราที่เชียงใหม่สนใจติดตั้งโซลาร์เซลล์ประมาณ 20 kW "
        "รบกวนส่งใบเสนอราคาและเงื่อนไขการผ่อนชำระให้ด้วยครับ\n\nนิรันดร์ ทองดี\n",
    )  # fmt: skip
    writer.store(somchai[1], INBOX, question, when)

    when = now - timedelta(days=rng.randint(7, 12))
    news = writer.build(
        sender=("Energy Expo Asia", "news@energy-expo.example"), to=[alice],
        subject="Energy Expo Asia: exhibitor list and early-bird tickets", when=when, zone="Asia/Singapore",
        html=True,
        headers=[("List-Id", "Energy Expo news <news.energy-expo.example>"),
                 ("List-Unsubscribe", "<mailto:unsubscribe@energy-expo.example>"), ("Precedence", "bulk")],
        body="The exhibitor list for Energy Expo Asia is online. Early-bird tickets end this Friday.\n",
    )  # fmt: skip
    writer.store(alice[1], INBOX, news, when)


def _pick(
    people: Sequence[DemoCustomer], taken: set[str], *, addresses: int, language: str, company: bool
) -> DemoCustomer | None:
    """The first customer fitting the case, preferring the language; never one already used."""
    fitting = [
        person
        for person in people
        if person.name not in taken
        and (len(person.emails) >= 2 if addresses >= 2 else len(person.emails) == 1)
        and (person.company is not None or not company)
    ]
    chosen = next((p for p in fitting if p.language == language), fitting[0] if fitting else None)
    if chosen is not None:
        taken.add(chosen.name)
    return chosen


def history(people: Sequence[DemoCustomer], now: datetime, seed: int = 2026) -> list[DemoMail]:
    """The demo mailboxes: the same messages for the same `people`, `now` and `seed`."""
    writer = _Writer(random.Random(seed))
    sellers = {email: (name, email) for name, email, _, _ in SALESPEOPLE}
    taken: set[str] = set()
    bounced = _pick(people, taken, addresses=2, language="th", company=False)
    private = _pick(people, taken, addresses=1, language="th", company=True)
    away = _pick(people, taken, addresses=1, language="en", company=True)
    for person in people:
        seller = sellers[person.owner]
        if person is private:
            start = now - timedelta(days=writer.rng.randint(4, 7), hours=writer.rng.randint(0, 10))
            _quote_thread(writer, person, seller, start, private_reply_at=now - timedelta(minutes=2))
        else:
            start = now - timedelta(days=writer.rng.randint(8, 27), hours=writer.rng.randint(0, 10))
            _quote_thread(writer, person, seller, start, auto_reply=person is away)
        if person is bounced:
            _bounce(writer, person, seller, now - timedelta(days=writer.rng.randint(2, 6)))
    alice, somchai = (sellers[email] for _, email, _, _ in SALESPEOPLE[:2])
    _prospects(writer, alice, somchai, now)
    return sorted(writer.mail, key=lambda mail: (mail.mailbox, mail.folder, mail.when))
