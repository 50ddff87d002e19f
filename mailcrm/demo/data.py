"""Deterministic sample data for the demo: a small Bangkok sales team and its customers.

Names are real-looking in English, Thai, Chinese, Persian and Khmer so a new user sees
how mailcrm handles scripts, timezones and languages from the first run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

SALESPEOPLE = (
    ("Alice Morgan", "alice@demo-sales.example", "en", "Asia/Bangkok"),
    ("Somchai Jaidee", "somchai@demo-sales.example", "th", "Asia/Bangkok"),
)

# (name, email local part, language, timezone)
PEOPLE: tuple[tuple[str, str, str, str], ...] = (
    ("Emily Carter", "emily.carter", "en", "Europe/London"),
    ("James O'Neill", "james.oneill", "en", "America/New_York"),
    ("Olivia Bennett", "olivia.bennett", "en", "Australia/Sydney"),
    ("Noah Williams", "noah.w", "en", "America/Los_Angeles"),
    ("สมศรี ใจดี", "somsri", "th", "Asia/Bangkok"),
    ("ประยุทธ์ วงศ์สวัสดิ์", "prayut.w", "th", "Asia/Bangkok"),
    ("กนกวรรณ ศรีสุข", "kanokwan", "th", "Asia/Bangkok"),
    ("ธนากร บุญมา", "thanakorn", "th", "Asia/Bangkok"),
    ("王芳", "wang.fang", "zh-Hans", "Asia/Shanghai"),
    ("李伟", "li.wei", "zh-Hans", "Asia/Shanghai"),
    ("陈静", "chen.jing", "zh-Hant", "Asia/Taipei"),
    ("张敏", "zhang.min", "zh-Hans", "Asia/Singapore"),
    ("سارا احمدی", "sara.ahmadi", "fa", "Asia/Tehran"),
    ("علی رضایی", "ali.rezaei", "fa", "Asia/Tehran"),
    ("مریم حسینی", "maryam.h", "fa", "Europe/Berlin"),
    ("សុខា ចន្ទ", "sokha", "km", "Asia/Phnom_Penh"),
    ("ដារ៉ា សុខ", "dara.sok", "km", "Asia/Phnom_Penh"),
    ("សុភា ម៉ៅ", "sophea.mao", "km", "Asia/Phnom_Penh"),
    ("វិចិត្រ ឈឹម", "vichet", "km", "Asia/Bangkok"),
    ("Daniel Kim", "daniel.kim", "en", "Asia/Seoul"),
)

COMPANIES = (
    ("Siam Solar Co., Ltd.", "siamsolar.example"),
    ("Mekong Logistics", "mekong-logistics.example"),
    ("Golden Dragon Trading", "goldendragon.example"),
    ("Persepolis Design", "persepolis.example"),
    ("Harbour & Finch", "harbourfinch.example"),
)

PRODUCTS = (
    ("Solar panel 400W", "THB", 8900_00),
    ("Inverter 5kW", "THB", 32500_00),
    ("Installation service", "THB", 15000_00),
    ("Maintenance plan (1 year)", "USD", 240_00),
    ("Seminar ticket: Energy 2026", "THB", 3500_00),
)

BIRTHDAY_YESTERDAY = 2  # the index in PEOPLE whose birthday the demo makes yesterday

LEAD_SOURCES = ("seminar", "referral", "website", "trade-fair", "inbound-email")
TAGS = ("vip", "newsletter", "installer", "reseller", "energy-seminar")

NOTES = (
    "Met at the Bangkok energy seminar; wants a quote for a rooftop system.",
    "Asked for the Thai brochure and pricing in THB.",
    "Prefers calls after 14:00 local time.",
    "Referred by an existing customer; follow up next quarter.",
    "Interested in a maintenance plan for the office building.",
)


@dataclass(frozen=True)
class DemoPurchase:
    when: datetime
    product: str
    quantity: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    emails: tuple[str, ...]
    language: str
    timezone: str
    birthday: date | None
    owner: str
    lead_source: str
    company: tuple[str, str] | None
    tags: tuple[str, ...]
    purchases: tuple[DemoPurchase, ...]
    notes: tuple[tuple[datetime, str], ...]


def customers(now: datetime | None = None, seed: int = 2026) -> list[DemoCustomer]:
    """The demo customers; the same list for the same `seed` and `now`."""
    clock = now or datetime.now(UTC)
    rng = random.Random(seed)
    result = []
    for index, (name, local, language, timezone) in enumerate(PEOPLE):
        company = COMPANIES[index % len(COMPANIES)] if index % 3 else None
        domain = company[1] if company else rng.choice(("mail.example", "post.example"))
        emails = [f"{local}@{domain}"]
        if index % 4 == 0:
            emails.append(f"{local}.home@mail.example")
        purchases = []
        for _ in range(rng.randint(0, 4)):
            product, currency, price = rng.choice(PRODUCTS)
            quantity = rng.randint(1, 3)
            when = clock - timedelta(days=rng.randint(3, 900), hours=rng.randint(0, 23))
            purchases.append(DemoPurchase(when, product, quantity, price * quantity, currency))
        notes = tuple(
            (clock - timedelta(days=rng.randint(0, 400), minutes=rng.randint(0, 600)), rng.choice(NOTES))
            for _ in range(rng.randint(1, 2))
        )
        birthday = (
            date(1960 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
            if index % 5 != 4
            else date(1988, 2, 29)
        )
        # Recent facts (after the random draws, so the rest of the data stays the same), so
        # the demo's rules have something to send today: a purchase yesterday for a few
        # customers (thank-you), and one birthday yesterday in the customer's own zone.
        if index % 5 == 1:
            product, currency, price = PRODUCTS[index % len(PRODUCTS)]
            when = clock - timedelta(days=1, hours=3 + index % 4)
            purchases.append(DemoPurchase(when, product, 1, price, currency))
        if index == BIRTHDAY_YESTERDAY:
            yesterday = (clock - timedelta(days=1)).astimezone(ZoneInfo(timezone)).date()
            birthday = date(1984, yesterday.month, yesterday.day)  # 1984 is a leap year: Feb 29 exists
        result.append(
            DemoCustomer(
                name=name,
                emails=tuple(emails),
                language=language,
                timezone=timezone,
                birthday=birthday,
                owner=SALESPEOPLE[0 if language in ("en", "fa", "zh-Hans", "zh-Hant") else 1][1],
                lead_source=LEAD_SOURCES[index % len(LEAD_SOURCES)],
                company=company,
                tags=tuple(sorted(set(rng.sample(TAGS, rng.randint(0, 2))))),
                purchases=tuple(sorted(purchases, key=lambda p: p.when)),
                notes=notes,
            )
        )
    return result
