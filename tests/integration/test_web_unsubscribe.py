"""One-click unsubscribe over real HTTP: the email the sender really sent to the test SMTP
server carries the signed link, and following it (uvicorn on loopback, httpx) does what the
customer asked, on both stores; hostile requests get a clean 4xx and record nothing."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest
from sendrunner import make_settings, plan, seed_customers
from servers.smtpd import RecordingSMTPServer
from servers.web import WebServer

from mailcrm.render import TemplateRenderer
from mailcrm.send.results import SendStats
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings, WebSettings
from mailcrm.store import timeline
from mailcrm.store.db import Database
from mailcrm.store.outbox.suppression import list_suppressed
from mailcrm.web.keys import LinkKeys
from mailcrm.web.links import Links

BASE = "https://crm.acme.example"
KEY = b"k" * 40
OLD_KEY = b"o" * 40
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def web(db: Database) -> Iterator[WebServer]:
    """The endpoint on a free loopback port, accepting links signed with KEY or OLD_KEY."""
    served = WebServer(WebSettings(base_url=BASE), db, LinkKeys(KEY, (OLD_KEY,)))
    served.start()
    try:
        yield served
    finally:
        served.stop()


async def _send(db: Database, settings: Settings, templates: Path, links: Links) -> SendStats:
    renderer = TemplateRenderer(templates)
    sender = Sender(
        db, sender_config(settings), renderer, worker_id="t", unsubscribe_url=links.unsubscribe_url
    )
    try:
        return await sender.send_due()
    finally:
        await sender.close()


def _message(smtpd: RecordingSMTPServer, index: int = 0) -> EmailMessage:
    message = message_from_bytes(smtpd.messages[index].content, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def _web_link(message: EmailMessage) -> str:
    """The https URL of List-Unsubscribe (the mailto stays beside it)."""
    links = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    assert len(links) == 2 and links[1].startswith("mailto:"), links
    return links[0]


def _local(link: str, web: WebServer) -> str:
    assert link.startswith(BASE + "/u/")
    return web.url + link.removeprefix(BASE)


def _suppressed(db: Database) -> list[tuple[str, str]]:
    with db.read() as session:
        return [(s.address, s.reason) for s in list_suppressed(session, limit=100)]


def _kinds(db: Database, customer: int) -> list[str]:
    with db.read() as session:
        return [entry.kind for entry in timeline.for_customer(session, customer)]


async def test_the_one_click_post_of_a_sent_email_suppresses_the_customer_once(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    (customer,) = seed_customers(db, 1, language="th")
    plan(db, [customer])
    assert (await _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(KEY)))).sent == 1
    message = _message(smtpd)
    link = _web_link(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(_local(link, web))
        assert page.status_code == 200
        assert '<html lang="th" dir="ltr">' in page.text
        assert "ยกเลิกการรับอีเมลทั้งหมด" in page.text  # the Thai confirm button
        assert _suppressed(db) == []  # a GET (a scanner, a preview) changes nothing
        assert "unsubscribed" not in _kinds(db, customer)

        for _ in range(2):  # a replay is harmless
            done = await client.post(_local(link, web), data=ONE_CLICK)
            assert done.status_code == 204
            assert done.content == b""
        again = await client.get(_local(link, web))
        assert "คุณได้ยกเลิกการรับอีเมลไปแล้ว" in again.text  # "you are already unsubscribed"
        assert "<form" not in again.text
    assert _suppressed(db) == [("c0@example.org", "unsubscribe")]
    assert _kinds(db, customer).count("unsubscribed") == 1
    with db.read() as session:
        (event,) = [e for e in timeline.for_customer(session, customer) if e.kind == "unsubscribed"]
    assert "unsubscribe link" in event.summary

    plan(db, [customer], occurrence="purchase:2")  # the next email is not sent
    assert (await _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(KEY)))).skipped == 1


async def test_the_page_speaks_persian_right_to_left_and_records_the_button_pressed(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    (customer,) = seed_customers(db, 1, language="fa")
    plan(db, [customer])
    await _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(KEY)))
    url = _local(_web_link(_message(smtpd)), web)
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(url)
        assert '<html lang="fa" dir="rtl">' in page.text
        assert 'name="viewport"' in page.text
        assert "لغو دریافت همهٔ ایمیل‌ها" in page.text
        done = await client.post(url, data={"choice": "none"})
    assert done.status_code == 200
    assert "اشتراک شما لغو شد" in done.text
    assert _suppressed(db) == [("c0@example.org", "unsubscribe")]


async def test_fewer_emails_keeps_purchase_emails_and_stops_the_others(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    (customer,) = seed_customers(db, 1)
    links = Links(BASE, LinkKeys(KEY))
    plan(db, [customer])
    await _send(db, make_settings(smtpd.port), templates, links)
    async with httpx.AsyncClient(timeout=10) as client:
        url = _local(_web_link(_message(smtpd)), web)
        done = await client.post(url, data={"choice": "fewer"})
        assert (await client.post(url, data={"choice": "fewer"})).status_code == 200  # a replay
    assert done.status_code == 200
    assert "only receive emails about your purchases" in done.text
    assert _suppressed(db) == []
    assert _kinds(db, customer).count("preference") == 1

    plan(db, [customer], rule="birthday", occurrence="birthday:2027")
    plan(db, [customer], occurrence="purchase:7")
    stats = await _send(db, make_settings(smtpd.port), templates, links)
    assert (stats.sent, stats.skipped) == (1, 1)  # the thank-you goes, the birthday email does not


async def test_an_http_base_url_gets_no_one_click_header(
    db: Database, smtpd: RecordingSMTPServer, templates: Path
) -> None:
    """RFC 8058 wants https: a plain-http demo address keeps the link but not the -Post header."""
    plan(db, seed_customers(db, 1))
    await _send(db, make_settings(smtpd.port), templates, Links("http://127.0.0.1:8080", LinkKeys(KEY)))
    message = _message(smtpd)
    assert str(message["List-Unsubscribe"]).startswith("<http://127.0.0.1:8080/u/")
    assert message["List-Unsubscribe-Post"] is None


async def test_tampered_cut_foreign_and_unknown_tokens_get_404_and_record_nothing(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    first, second = seed_customers(db, 2)
    plan(db, [first, second])
    await _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(KEY)))
    links = sorted(_web_link(_message(smtpd, i)) for i in range(2))
    token_a, token_b = (link.rsplit("/", 1)[1] for link in links)
    row_a, sig_a = token_a.split(".")
    row_b = token_b.split(".")[0]
    flipped = sig_a[:-1] + ("A" if sig_a[-1] != "A" else "B")
    stranger = Links(BASE, LinkKeys(b"x" * 40)).unsubscribe_token(int(row_a, 36), first)
    bad = [
        f"{row_a}.{flipped}",  # one character changed
        token_a[:-3],  # cut
        f"{row_b}.{sig_a}",  # another email's signature
        f"{int(row_a, 36) + 1000:x}.{sig_a}",  # a row that does not exist
        stranger,  # signed with a key the endpoint does not hold
        "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AEgnp.exe",
        "a" * 5000,
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for token in bad:
            for method in ("GET", "POST"):
                answer = await client.request(method, f"{web.url}/u/{token}", data=ONE_CLICK)
                assert answer.status_code in (404, 414), (token, method, answer.status_code)
                assert "Traceback" not in answer.text
                assert "mailcrm" not in answer.text
    assert _suppressed(db) == []


async def test_a_link_signed_with_the_old_key_still_works(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    (customer,) = seed_customers(db, 1)
    plan(db, [customer])
    await _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(OLD_KEY)))
    async with httpx.AsyncClient(timeout=10) as client:
        done = await client.post(_local(_web_link(_message(smtpd)), web), data=ONE_CLICK)
    assert done.status_code == 204
    assert _suppressed(db) == [("c0@example.org", "unsubscribe")]


def test_hostile_requests_get_clean_answers_with_the_security_headers(db: Database, web: WebServer) -> None:
    with httpx.Client(base_url=web.url, timeout=30) as client:
        answers = {
            "page css": client.get("/static/page.css"),
            "unknown path": client.get("/etc/passwd"),
            "10 MB body": client.post("/u/0.AAAAAAAAAAAAAAAA", content=b"x" * (10 * 1024 * 1024)),
            "odd method": client.request("PUT", "/u/0.AAAAAAAAAAAAAAAA"),
            "preflight": client.options(
                "/u/0.AAAAAAAAAAAAAAAA",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ),
            "not a form": client.post("/u/0.AAAAAAAAAAAAAAAA", content=b"\xff\xfe"),
        }
    assert answers["page css"].status_code == 200
    assert answers["unknown path"].status_code == 404
    assert answers["10 MB body"].status_code == 413
    assert answers["odd method"].status_code == 405
    assert set(answers["odd method"].headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert answers["preflight"].status_code == 405
    assert answers["not a form"].status_code == 404  # the token is checked first
    for what, answer in answers.items():
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
        assert headers["x-frame-options"] == "DENY", what
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["referrer-policy"] == "no-referrer", what
        assert "access-control-allow-origin" not in headers, what
        assert "server" not in headers, what
        assert "Traceback" not in answer.text, what


def test_a_request_whose_body_never_finishes_gets_503_within_the_timeout(db: Database) -> None:
    """A client that promises a body and sends part of it (slowloris) is cut off."""
    served = WebServer(WebSettings(request_timeout_seconds=1), db, LinkKeys(KEY))
    served.start()
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as client:
            client.sendall(
                b"POST /u/0.AAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nList-Unsub"
            )
            started = time.monotonic()
            answer = client.recv(4096)
            waited = time.monotonic() - started
    finally:
        served.stop()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"x-frame-options: DENY" in answer
    assert 0.5 < waited < 5


def test_head_and_get_of_a_link_change_nothing(
    db: Database, smtpd: RecordingSMTPServer, templates: Path, web: WebServer
) -> None:
    (customer,) = seed_customers(db, 1)
    plan(db, [customer])
    await_send = _send(db, make_settings(smtpd.port), templates, Links(BASE, LinkKeys(KEY)))
    asyncio.run(await_send)
    url = _local(_web_link(_message(smtpd)), web)
    with httpx.Client(timeout=10) as client:
        assert client.head(url).status_code == 200
        assert client.get(url, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert _suppressed(db) == []
    assert _kinds(db, customer) == ["email_out"]
