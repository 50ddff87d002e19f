"""Benchmark: render templates and build message bytes, against building with the stdlib.

Generates (seeded) N emails over the shipped templates (thank_you, anniversary, birthday,
follow_up, win_back) in en, th, zh, fa and km, for customers with Latin, Thai, Chinese,
Persian and Khmer names; half of them with link tracking on. All on one core (one process):

1. render: `TemplateRenderer.render` (subject, text and HTML) for every email;
2. build: `build_message` on the rendered parts (multipart/alternative, List-Unsubscribe,
   threading headers for follow-ups);
3. peer baseline: the same messages built with the stdlib's modern API, as a caller would
   write it: `EmailMessage(policy=email.policy.default)`, headers set from `Address`
   objects, `set_content(text)`, `add_alternative(html, subtype="html")`, `as_bytes()`.

Rendering and building run `--repeat` times, each on a fresh set of emails (new dates,
amounts and names, so formatting caches help no more than in a long-running sender); the
best run counts. The stdlib baseline runs once on the last set. A sample of the built
messages is parsed back with `policy.default` and checked.

    python benchmarks/render_build.py [--count N] [--seed N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gc
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.headerregistry import Address as StdAddress
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailcrm.domain.mime import Address, build_message, make_message_id, rfc5322_date
from mailcrm.render import RenderedEmail, TemplateRenderer, template_context

SEED = 20240611
TARGET_RENDER = 20_000  # emails/s on one core
TARGET_BUILD = 5_000  # emails/s on one core (the send path needs >= 1,000 in all)
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

NAMES = {
    "en": ["Anna Müller", "James O'Brien", "Maria Garcia", "Dr. Peter Smith", "Chloé Martin"],
    "th": ["สมชาย ใจดี", "นางสาว สมศรี รักไทย", "คุณวิภา ทองดี", "ประยุทธ์ ศรีสุข"],
    "zh": ["王小明", "李华", "张伟", "陈美玲"],
    "fa": ["علی رضایی", "سید محمد حسینی", "مریم احمدی", "زهرا کریمی"],
    "km": ["សុខ ដារ៉ា", "ចាន់ សុភា", "លោក ហេង វិចិត្រ"],
}
PRODUCTS = ["Seminar ticket", "Annual licence", "สัมมนาการตลาด", "年度会员", "دوره آموزشی", "វគ្គបណ្តុះបណ្តាល"]
CURRENCIES = ["THB", "USD", "CNY", "IRR", "KHR", "EUR"]
TIMEZONES = ["Asia/Bangkok", "Asia/Shanghai", "Asia/Tehran", "Asia/Phnom_Penh", "Europe/Berlin"]
SALES = [("Alice Morgan", "alice@acme.example"), ("สมศรี ใจงาม", "somsri@acme.example")]


@dataclass(frozen=True)
class Job:
    template: str
    languages: tuple[str, ...]
    timezone: str
    context: dict[str, Any]
    tracked: bool
    to: Address
    sender: Address
    message_id: str
    in_reply_to: str | None
    unsubscribe: str


def generate(count: int, seed: int) -> list[Job]:
    rnd = random.Random(seed)
    templates = sorted(TemplateRenderer(TEMPLATES).names())
    jobs = []
    for index in range(count):
        language = rnd.choice(sorted(NAMES))
        name = rnd.choice(NAMES[language])
        template = rnd.choice(templates)
        seller_name, seller_email = rnd.choice(SALES)
        token = f"{index:08x}{rnd.getrandbits(64):016x}"
        unsubscribe = f"https://crm.acme.example/u/{token}"
        purchase = {
            "product": rnd.choice(PRODUCTS),
            "quantity": rnd.randint(1, 3),
            "amount_minor": rnd.randint(100, 5_000_000),
            "currency": rnd.choice(CURRENCIES),
            "purchased_at": datetime(2019, 1, 1)
            + timedelta(days=rnd.randint(0, 1800), hours=rnd.randint(0, 23)),
        }
        follow_up = template == "follow_up"
        extra: dict[str, Any] = {"today": date(2024, 6, 11)}
        if follow_up:
            extra["previous_subject"] = "Your quote for the annual licence"
        if template == "thank_you":
            extra["feedback_url"] = lambda score, token=token: f"https://crm.acme.example/f/{token}/{score}"
        zone = rnd.choice(TIMEZONES)
        context = template_context(
            customer={"id": index, "name": name, "email": f"c{index}@example.com", "timezone": zone},
            salesperson={"name": seller_name, "email": seller_email},
            purchase=purchase if template != "birthday" else None,
            extra=extra,
            unsubscribe_url=unsubscribe,
        )
        jobs.append(
            Job(
                template=template,
                languages=(language, "en"),
                timezone=zone,
                context=context,
                tracked=index % 2 == 0,
                to=Address(f"c{index}@example.com", name),
                sender=Address(seller_email, seller_name),
                message_id=make_message_id("acme.example"),
                in_reply_to=f"<prev{index}@acme.example>" if follow_up else None,
                unsubscribe=unsubscribe,
            )
        )
    return jobs


def track(url: str) -> str:
    return "https://crm.acme.example/c/" + str(len(url))


def render_all(renderer: TemplateRenderer, jobs: Sequence[Job]) -> list[RenderedEmail]:
    return [
        renderer.render(
            job.template,
            languages=job.languages,
            context=job.context,
            link_rewriter=track if job.tracked else None,
            timezone=job.timezone,
        )
        for job in jobs
    ]


WHEN = datetime(2024, 6, 11, 3, 0, tzinfo=UTC)


def build_all(jobs: Sequence[Job], emails: Sequence[RenderedEmail]) -> list[bytes]:
    return [
        build_message(
            sender=job.sender,
            to=job.to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=job.message_id,
            date=WHEN,
            in_reply_to=job.in_reply_to,
            list_unsubscribe_url=job.unsubscribe,
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
        for job, rendered in zip(jobs, emails, strict=True)
    ]


def stdlib_all(jobs: Sequence[Job], emails: Sequence[RenderedEmail]) -> list[bytes]:
    """What a caller writes with the stdlib's modern API for the same messages."""
    date_header = rfc5322_date(WHEN)
    out = []
    for job, rendered in zip(jobs, emails, strict=True):
        message = EmailMessage(policy=email.policy.default)
        message["Date"] = date_header
        message["From"] = StdAddress(job.sender.name, addr_spec=job.sender.email)
        message["To"] = StdAddress(job.to.name, addr_spec=job.to.email)
        message["Subject"] = rendered.subject
        message["Message-ID"] = job.message_id
        if job.in_reply_to:
            message["In-Reply-To"] = job.in_reply_to
            message["References"] = job.in_reply_to
        message["List-Unsubscribe"] = f"<{job.unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.text)
        if rendered.html is not None:
            message.add_alternative(rendered.html, subtype="html")
        out.append(message.as_bytes())
    return out


def check(jobs: Sequence[Job], emails: Sequence[RenderedEmail], built: Sequence[bytes]) -> None:
    """Parse a sample back with the stdlib: the right recipient, subject and parts."""
    for job, rendered, raw in list(zip(jobs, emails, built, strict=True))[:: max(1, len(jobs) // 200)]:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        assert [a.addr_spec for a in message["To"].addresses] == [job.to.email]
        assert str(message["Subject"]) == rendered.subject
        plain = message.get_body(("plain",))
        assert plain is not None and plain.get_content().replace("\r\n", "\n") == rendered.text
        html = message.get_body(("html",))
        assert html is not None and rendered.html is not None
        assert html.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html.rstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    renderer = TemplateRenderer(TEMPLATES)
    warm = generate(500, args.seed - 1)
    render_all(renderer, warm)  # compile every template once, as a running sender has
    # A fresh set of emails per repeat, so the formatting caches help only as much as they
    # would in a long-running sender (dates and amounts are mostly new).
    sets = [generate(args.count, args.seed + index) for index in range(args.repeat)]
    render_s = build_s = float("inf")
    for jobs in sets:
        gc.collect()
        start = time.perf_counter()
        emails = render_all(renderer, jobs)
        render_s = min(render_s, time.perf_counter() - start)
        gc.collect()
        start = time.perf_counter()
        built = build_all(jobs, emails)
        build_s = min(build_s, time.perf_counter() - start)
    check(jobs, emails, built)
    gc.collect()
    start = time.perf_counter()
    stdlib_all(jobs, emails)  # once: it is the slow one
    stdlib_s = time.perf_counter() - start

    count = len(jobs)
    rates = {
        "render": round(count / render_s),
        "build": round(count / build_s),
        "render_and_build": round(count / (render_s + build_s)),
        "stdlib_build": round(count / stdlib_s),
    }
    ratio = stdlib_s / build_s
    mean_bytes = sum(map(len, built)) // count
    if args.json:
        summary = {
            "count": count,
            "mean_bytes": mean_bytes,
            "rates": rates,
            "build_vs_stdlib": round(ratio, 1),
        }
        print(json.dumps(summary))
        return 0
    print(
        f"{count} emails, {len(renderer.names())} templates x 5 languages, mean {mean_bytes} bytes, one core"
    )
    print(f"  render (subject, text, html)        {rates['render']:>7} emails/s   target {TARGET_RENDER}")
    print(f"  build_message                       {rates['build']:>7} emails/s   target {TARGET_BUILD}")
    print(f"  render + build                      {rates['render_and_build']:>7} emails/s")
    print(f"  stdlib EmailMessage, policy=default {rates['stdlib_build']:>7} emails/s   (peer baseline)")
    print(f"  build_message vs stdlib: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
