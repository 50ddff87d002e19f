"""Templates: the shipped set in every language, the sandbox against template injection,
language fallback, helpers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mailcrm.render import (
    RenderedEmail,
    TemplateError,
    TemplateRenderer,
    check_jinja2_version,
    first_name,
    format_date,
    format_money,
    template_context,
    text_direction,
)

SHIPPED = Path(__file__).parents[2] / "templates"
NAMES = {"thank_you", "anniversary", "birthday", "follow_up", "win_back"}
LANGUAGES = {"en", "th", "zh", "fa", "km"}
UNSUBSCRIBE = "https://crm.acme.example/u/tok123"


def feedback(score: int) -> str:
    return f"https://crm.acme.example/f/tok123/{score}"


def context(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "customer": {"name": "Somchai Jaidee", "email": "somchai@example.co.th", "timezone": "Asia/Bangkok"},
        "salesperson": {"name": "Alice Morgan", "email": "alice@acme.example"},
        "purchase": {
            "product": "Seminar ticket",
            "amount_minor": 350050,
            "currency": "THB",
            "purchased_at": datetime(2021, 3, 4, 20, 0),  # UTC; 5 March in Bangkok
        },
        "unsubscribe_url": UNSUBSCRIBE,
        "extra": {"today": date(2024, 3, 5), "feedback_url": feedback},
    }
    fields.update(changes)
    return template_context(**fields)


@pytest.fixture(scope="module")
def shipped() -> TemplateRenderer:
    return TemplateRenderer(SHIPPED)


def write(root: Path, files: dict[str, str]) -> TemplateRenderer:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return TemplateRenderer(root)


# --- the shipped templates ------------------------------------------------------------------


def test_every_template_exists_in_every_language(shipped: TemplateRenderer) -> None:
    assert shipped.names() == NAMES
    for name in NAMES:
        assert shipped.languages(name) == LANGUAGES


@pytest.mark.parametrize("language", sorted(LANGUAGES))
@pytest.mark.parametrize("name", sorted(NAMES))
def test_shipped_template_renders(shipped: TemplateRenderer, name: str, language: str) -> None:
    email = shipped.render(name, languages=[language], context=context(), timezone="Asia/Bangkok")
    assert isinstance(email, RenderedEmail)
    assert (email.template, email.language) == (name, language)
    assert email.subject and "\n" not in email.subject
    assert email.html is not None
    for part in (email.subject, email.text, email.html):
        assert "{{" not in part and "{%" not in part and "Undefined" not in part
    assert "Somchai" in email.text and "Somchai" in email.html
    assert "Alice Morgan" in email.text and "Alice Morgan" in email.html
    assert UNSUBSCRIBE in email.text
    assert f'href="{UNSUBSCRIBE}"' in email.html
    assert f'lang="{language}"' in email.html
    direction = "rtl" if language == "fa" else "ltr"
    assert f'dir="{direction}"' in email.html
    assert email.text.endswith("\n") and not email.text.endswith("\n\n")


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_thank_you_mentions_the_purchase(shipped: TemplateRenderer, language: str) -> None:
    email = shipped.render("thank_you", languages=[language], context=context(), timezone="Asia/Bangkok")
    assert "Seminar ticket" in email.text
    money = {"en": "THB3,500.50", "th": "฿3,500.50", "zh": "THB3,500.50", "fa": "۳٬۵۰۰٫۵۰", "km": "3,500.50฿"}
    day = {
        "en": "March 5, 2021",
        "th": "5 มีนาคม",
        "zh": "2021年3月5日",
        "fa": "۵ مارس ۲۰۲۱",
        "km": "5 មីនា 2021",
    }
    assert money[language] in email.text
    assert day[language] in email.text
    assert feedback(5) in email.text and f'href="{feedback(5)}"' in (email.html or "")


@pytest.mark.parametrize(
    ("language", "years"), [("en", "3 years"), ("th", "3 ปี"), ("zh", "3年"), ("fa", "۳ سال")]
)
def test_anniversary_counts_the_years(shipped: TemplateRenderer, language: str, years: str) -> None:
    email = shipped.render("anniversary", languages=[language], context=context())
    assert years in email.subject or years in email.text
    one = context(extra={"today": date(2022, 3, 6)})
    assert "1 year " in shipped.render("anniversary", languages=["en"], context=one).text


def test_without_a_name_the_greeting_has_no_gap(shipped: TemplateRenderer) -> None:
    nameless = context(customer={"name": "", "email": "x@example.com"})
    for language in LANGUAGES:
        email = shipped.render("birthday", languages=[language], context=nameless)
        assert " ," not in email.text and "Dear ," not in email.text
        assert email.subject.strip() == email.subject


def test_follow_up_replies_to_the_previous_subject(shipped: TemplateRenderer) -> None:
    extra = {"today": date(2024, 3, 5), "previous_subject": "Your quote"}
    assert (
        shipped.render("follow_up", languages=["th"], context=context(extra=extra)).subject
        == "Re: Your quote"
    )
    extra["previous_subject"] = "RE: Your quote"
    assert (
        shipped.render("follow_up", languages=["en"], context=context(extra=extra)).subject
        == "RE: Your quote"
    )
    assert shipped.render("follow_up", languages=["en"], context=context()).subject == "Following up"


def test_win_back_without_a_purchase(shipped: TemplateRenderer) -> None:
    email = shipped.render("win_back", languages=["en"], context=context(purchase=None))
    assert "last order" not in email.text


def test_a_missing_variable_fails_with_file_and_line(shipped: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as caught:
        shipped.render("thank_you", languages=["en"], context=context(purchase=None))
    message = str(caught.value)
    assert "templates/thank_you/en.html.j2:4:" in message
    assert "'purchase' is undefined" in message
    assert caught.value.line == 4 and caught.value.template == "thank_you"


def test_no_unsubscribe_url_no_email(shipped: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="unsubscribe_url"):
        shipped.render("birthday", languages=["en"], context=context(unsubscribe_url=None))


def test_customer_data_is_escaped_in_html_only(shipped: TemplateRenderer) -> None:
    hostile = context(customer={"name": "<script>alert(1)</script> Bob", "email": "b@example.com"})
    email = shipped.render("birthday", languages=["en"], context=hostile)
    assert email.html is not None
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text


# --- language choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "chosen"),
    [
        (["th"], "th"),
        (["TH"], "th"),
        (["zh-Hant-TW"], "zh"),
        (["zh-Hans"], "zh"),
        (["de", "fa"], "fa"),
        (["de-AT", "km-KH"], "km"),
        (["de"], "en"),
        ([], "en"),
        (["", "th"], "th"),
        (["en-GB"], "en"),
    ],
)
def test_language_fallback(shipped: TemplateRenderer, requested: list[str], chosen: str) -> None:
    assert shipped.render("birthday", languages=requested, context=context()).language == chosen


def test_formatting_follows_the_requested_locale(shipped: TemplateRenderer) -> None:
    british = shipped.render("thank_you", languages=["en-GB"], context=context(), timezone="Asia/Bangkok")
    assert "5 March 2021" in british.text


def test_no_language_at_all_is_an_error(tmp_path: Path) -> None:
    renderer = write(tmp_path, {"only_th/th.subject.j2": "s", "only_th/th.txt.j2": "t"})
    with pytest.raises(TemplateError, match="has none of the languages de, en"):
        renderer.render("only_th", languages=["de"], context={})
    with pytest.raises(TemplateError, match="no template named 'nope'"):
        renderer.render("nope", languages=["th"], context={})


def test_index_skips_layouts_and_incomplete_languages(tmp_path: Path) -> None:
    renderer = write(
        tmp_path,
        {
            "_layout/base.html.j2": "x",
            "a/en.subject.j2": "s",
            "a/en.txt.j2": "t",
            "a/th.subject.j2": "subject without body",
            "a/km.txt.j2": "body without subject",
            "b/en.subject.j2": "s",
            "b/en.html.j2": "<p>h</p>",
            "c/README.md": "not a template",
        },
    )
    assert renderer.names() == {"a", "b"}
    assert renderer.languages("a") == {"en"}


# --- rendering rules ------------------------------------------------------------------------


def test_subject_is_one_line_and_never_empty(tmp_path: Path) -> None:
    renderer = write(
        tmp_path,
        {
            "s/en.subject.j2": "Hello\n {{ name }}\r\n\tthere\x00\u2028!",
            "s/en.txt.j2": "t",
            "e/en.subject.j2": "{{ name }}\n",
            "e/en.txt.j2": "t",
        },
    )
    assert renderer.render("s", languages=["en"], context={"name": "A\nB"}).subject == "Hello A B there !"
    with pytest.raises(TemplateError, match=r"e/en\.subject\.j2: the subject is empty"):
        renderer.render("e", languages=["en"], context={"name": " \n "})


def test_text_part_made_from_html_keeps_the_links(tmp_path: Path) -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>Hi {{ name }},</p><p>See <a href='https://acme.example/offer?a=1&amp;b=2'>our offer</a>.</p>"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · <a href="mailto:x@acme.example">mail us</a></p>'
        "</body></html>"
    )
    renderer = write(tmp_path, {"h/en.subject.j2": "s", "h/en.html.j2": html})
    email = renderer.render("h", languages=["en"], context={"name": "Ann", "unsubscribe_url": UNSUBSCRIBE})
    assert email.text == (
        f"Hi Ann,\n\nSee our offer (https://acme.example/offer?a=1&b=2).\n\n"
        f"Unsubscribe ({UNSUBSCRIBE}) · mail us (mailto:x@acme.example)\n"
    )


def test_link_rewriter_tracks_web_links_only(tmp_path: Path) -> None:
    html = (
        '<p><a href="https://acme.example/a?x=1&amp;y=2">A</a> <a class="b" href=\'http://acme.example/b\'>B</a>'
        ' <a href="mailto:sales@acme.example">mail</a> <a href="{{ unsubscribe_url }}">unsubscribe</a>'
        ' <link href="https://acme.example/style.css"> <a href=https://acme.example/bare>C</a></p>'
    )
    text = (
        "Offer: https://acme.example/a?x=1&y=2.\nMail: mailto:sales@acme.example\n"
        "Stop: {{ unsubscribe_url }}\nWiki (https://en.example/wiki/A_(b)).\n"
    )
    renderer = write(tmp_path, {"l/en.subject.j2": "s", "l/en.html.j2": html, "l/en.txt.j2": text})
    seen: list[str] = []

    def track(url: str) -> str:
        seen.append(url)
        return f"https://t.acme.example/c/{len(seen)}?u=1&v=2"

    email = renderer.render(
        "l", languages=["en"], context={"unsubscribe_url": UNSUBSCRIBE}, link_rewriter=track
    )
    assert email.html is not None
    assert 'href="https://t.acme.example/c/1?u=1&amp;v=2"' in email.html
    assert 'href="https://t.acme.example/c/2?u=1&amp;v=2"' in email.html
    assert 'href="mailto:sales@acme.example"' in email.html
    assert f'href="{UNSUBSCRIBE}"' in email.html
    assert 'href="https://acme.example/style.css"' in email.html
    assert 'href="https://t.acme.example/c/3?u=1&amp;v=2">C</a>' in email.html
    assert "Offer: https://t.acme.example/c/4?u=1&v=2.\n" in email.text
    assert f"Stop: {UNSUBSCRIBE}\n" in email.text
    assert "Wiki (https://t.acme.example/c/5?u=1&v=2).\n" in email.text
    assert seen == [
        "https://acme.example/a?x=1&y=2",
        "http://acme.example/b",
        "https://acme.example/bare",
        "https://acme.example/a?x=1&y=2",
        "https://en.example/wiki/A_(b)",
    ]


def test_compiled_templates_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = write(
        tmp_path, {"c/en.subject.j2": "s {{ x }}", "c/en.txt.j2": "t", "c/en.html.j2": "<p>h</p>"}
    )
    loads: list[str] = []
    loader = renderer._env.loader
    assert loader is not None
    original = loader.get_source

    def counting(environment: Any, template: str) -> Any:
        loads.append(template)
        return original(environment, template)

    monkeypatch.setattr(loader, "get_source", counting)
    for value in range(50):
        assert renderer.render("c", languages=["en"], context={"x": value}).subject == f"s {value}"
    assert sorted(loads) == ["c/en.html.j2", "c/en.subject.j2", "c/en.txt.j2"]


def test_rendering_again_compiles_nothing_again(
    shipped: TemplateRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps rendering fast (benchmarks/render_build.py measures the rate): after the
    first email, a shipped template is never read or compiled again."""
    variables = context()
    first = shipped.render("thank_you", languages=["th"], context=variables)
    loader = shipped._env.loader
    assert loader is not None
    loads: list[str] = []
    original = loader.get_source

    def counting(environment: Any, template: str) -> Any:
        loads.append(template)
        return original(environment, template)

    monkeypatch.setattr(loader, "get_source", counting)
    for _ in range(200):
        assert shipped.render("thank_you", languages=["th"], context=variables) == first
    assert loads == []


# --- the sandbox: template injection (SSTI) cannot reach Python internals ----------------

_SPY: list[str] | None = None
_ALLOWED_OPEN: list[str] = []
_WATCHED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "socket.connect")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _SPY is None:
        return
    if event == "open":
        path = args[0]
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if isinstance(path, str) and not any(path.startswith(root) for root in _ALLOWED_OPEN):
            _SPY.append(f"open {path}")
    elif event.startswith(_WATCHED):
        _SPY.append(event)


sys.addaudithook(_audit)  # hooks cannot be removed; it records only while _SPY is a list


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every payload rendered once, unwatched: what Python and its libraries read on first
    use (jinja2's debug module, babel's locale data, a time zone file, source lines for a
    traceback) is then loaded whichever test runs first, so the spy sees only what a
    template itself reaches for."""
    root = tmp_path_factory.mktemp("warm")
    files = {f"{name}/en.subject.j2": "Subject" for name in PAYLOADS}
    files.update({f"{name}/en.txt.j2": _payload_body(name) for name in PAYLOADS})
    renderer = write(root, files)
    for name in PAYLOADS:
        with pytest.raises(TemplateError):
            renderer.render(name, languages=["en"], context={})


@pytest.fixture
def spy(tmp_path: Path, warmed: None) -> Iterator[list[str]]:
    global _SPY
    _ALLOWED_OPEN[:] = [str(tmp_path)]
    _SPY = []
    try:
        yield _SPY
    finally:
        _SPY = None


PAYLOADS = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "subclasses": "{{ ().__class__.__base__.__subclasses__() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner": "{{ joiner.__init__.__globals__['os'].system('id') }}",
    "namespace": "{{ namespace.__init__.__globals__ }}",
    "self": "{{ self._TemplateReference__context }}",
    "getitem": "{{ ''['__class__'] }}",
    "attr_format": "{{ 'x'|attr('format') }}",
    "attr_class": "{{ 'x'|attr('__class__') }}",
    "format": "{{ '{0.__class__.__init__.__globals__}'.format(cycler) }}",
    "format_map": "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "stored_format": "{% set f = '{0.__class__}'.format %}{{ ['x']|map(f)|list }}",
    "map_format": "{{ ['{0}']|map(attribute='format')|list }}",
    "range": "{% for i in range(10**9) %}{% endfor %}",
    "repeat": "{{ 'x' * 10**9 }}",
    "repeat_list": "{{ ([1] * 10**8)|length }}",
    "power": "{{ 10 ** (10 ** 9) }}",
    "percent": "{{ '%1000000000s' % 'x' }}",
    "nested_loops": "{% set l = range(5000)|list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}",
    "recursion_calls": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{f(60)}}",
    "doubling": "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ f('x', 60) }}",
    "replace": "{{ ('x' * 1000)|replace('x', 'y' * 100000) }}",
    "join": "{{ ('x' * 100000).join(range(10000)|map('string')) }}",
    "center": "{{ 'x'|center(10**9) }}",
    "lipsum": "{{ lipsum(10**6) }}",
    "output": "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    "mutate": "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "include_loop": "{% include 'include_loop/en.txt.j2' %}",
    "import_file": "{% include '/etc/passwd' %}",
    "parent_dir": "{% include '../../../etc/passwd' %}",
}


# A payload is refused within milliseconds; the bound is against one that runs on (an
# exponential macro, a billion-character string), generous for a machine shared by
# parallel test workers.
SANDBOX_SECONDS = 10.0


def _payload_body(payload: str) -> str:
    """A template with `payload` on its third line (the include loop: itself twice)."""
    if payload == "include_loop":
        return PAYLOADS[payload] + PAYLOADS[payload]
    return "Line one\nLine two\n" + PAYLOADS[payload] + "\nLine four\n"


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_sandbox_refuses(payload: str, tmp_path: Path, spy: list[str]) -> None:
    body = _payload_body(payload)
    renderer = write(tmp_path, {f"{payload}/en.subject.j2": "Subject", f"{payload}/en.txt.j2": body})
    start = time.perf_counter()
    with pytest.raises(TemplateError) as caught:
        renderer.render(payload, languages=["en"], context={})
    assert time.perf_counter() - start < SANDBOX_SECONDS
    message = str(caught.value)
    assert f"{payload}/en.txt.j2" in message
    if payload != "include_loop":
        assert caught.value.line == 3, message
    assert spy == []


def test_the_process_survives_and_renders_on(tmp_path: Path) -> None:
    files = {f"{name}/en.subject.j2": "S" for name in PAYLOADS}
    files.update({f"{name}/en.txt.j2": body for name, body in PAYLOADS.items()})
    files.update({"good/en.subject.j2": "Hello {{ name }}", "good/en.txt.j2": "Body"})
    renderer = write(tmp_path, files)
    for name in PAYLOADS:
        with pytest.raises(TemplateError):
            renderer.render(name, languages=["en"], context={})
    assert renderer.render("good", languages=["en"], context={"name": "Ann"}).subject == "Hello Ann"


def test_syntax_errors_name_file_and_line(tmp_path: Path) -> None:
    renderer = write(tmp_path, {"bad/en.subject.j2": "ok", "bad/en.txt.j2": "a\nb\n{% if %}\n"})
    with pytest.raises(TemplateError, match=r"bad/en\.txt\.j2:3: syntax error"):
        renderer.render("bad", languages=["en"], context={})


def test_ordinary_template_features_still_work(tmp_path: Path) -> None:
    body = (
        "{% for tag in customer.tags|sort %}{{ loop.index }}.{{ tag|upper }} {% endfor %}"
        "{{ customer.name.split()[0] }} {{ customer.custom.get('vip', 'no') }} {{ '-' * 3 }} "
        "{{ (2 ** 10) }} {{ 7 % 3 }} {{ customer.name|replace('Jai', 'J') }} {{ range(3)|sum }}"
        "{% macro hi(n) %}hi {{ n }}{% endmacro %} {{ hi(customer.name) }}"
    )
    renderer = write(tmp_path, {"ok/en.subject.j2": "s", "ok/en.txt.j2": body})
    customer = {"name": "Somchai Jaidee", "tags": ["vip", "a"], "custom": {}}
    text = renderer.render("ok", languages=["en"], context={"customer": customer}).text
    assert text == "1.A 2.VIP Somchai no --- 1024 1 Somchai Jdee 3 hi Somchai Jaidee\n"


@pytest.mark.parametrize(
    ("version", "ok"), [("3.1.6", True), ("3.2.0", True), ("3.1.5", False), ("2.11.3", False)]
)
def test_jinja2_version_floor(version: str, ok: bool) -> None:
    if ok:
        check_jinja2_version(version)
    else:
        with pytest.raises(TemplateError, match=r">= 3\.1\.6"):
            check_jinja2_version(version)


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Somchai Jaidee", "Somchai"),
        ("สมชาย ใจดี", "สมชาย"),
        ("นาย สมชาย ใจดี", "สมชาย"),
        ("คุณสมศรี ใจงาม", "สมศรี"),
        ("王小明", "王小明"),
        ("王 小明", "王 小明"),
        ("山田 太郎", "山田 太郎"),
        ("김민준", "김민준"),
        ("سید علی رضایی", "علی"),
        ("علی رضایی", "علی"),
        ("សុខ ដារ៉ា", "សុខ ដារ៉ា"),
        ("លោក សុខ ដារ៉ា", "សុខ ដារ៉ា"),
        ("Dr. Anna Müller", "Anna"),
        ("Müller, Anna", "Anna"),
        ("Anna Lee, PhD", "Anna"),
        ("J. R. Smith", "J. R. Smith"),
        ("  Anna   Lee ", "Anna"),
        ("anna@example.com", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_first_name(name: str | None, expected: str) -> None:
    assert first_name(name) == expected


def test_formatting_helpers_outside_a_render_use_english_and_utc() -> None:
    assert format_date(date(2024, 3, 5)) == "March 5, 2024"
    assert format_date(datetime(2024, 3, 4, 20, 0)) == "March 4, 2024"
    assert format_money(123456, "USD") == "$1,234.56"
    assert format_money(5000, "JPY") == "¥5,000"


def test_dates_are_shown_in_the_customer_timezone(tmp_path: Path) -> None:
    renderer = write(
        tmp_path,
        {
            "d/en.subject.j2": "s",
            "d/en.txt.j2": "{{ when|format_date('short') }} {{ format_datetime(when) }}",
        },
    )
    moment = datetime(2024, 3, 4, 20, 30)  # UTC
    bangkok = renderer.render("d", languages=["en"], context={"when": moment}, timezone="Asia/Bangkok").text
    assert bangkok.startswith("3/5/24 Mar 5, 2024, 3:30:00")
    utc = renderer.render("d", languages=["en"], context={"when": moment}).text
    assert utc.startswith("3/4/24 Mar 4, 2024, 8:30:00")


@pytest.mark.parametrize(
    ("language", "direction"), [("fa", "rtl"), ("ar", "rtl"), ("he", "rtl"), ("ur", "rtl")]
)
def test_right_to_left_languages(language: str, direction: str) -> None:
    assert text_direction(language) == direction
    assert text_direction("th") == text_direction("zh-Hans") == text_direction("km") == "ltr"


def test_template_context_shape() -> None:
    variables = template_context(
        customer={"name": "สมชาย ใจดี", "email": "s@example.co.th", "tags": ["vip"]},
        salesperson={"name": "Alice Morgan", "email": "alice@acme.example", "smtp": {"host": "smtp.acme"}},
        purchase={
            "product": "P",
            "amount_minor": 1050,
            "currency": "USD",
            "purchased_at": datetime(2020, 6, 1),
        },
        extra={"today": date(2024, 5, 31), "feedback_url": feedback},
        unsubscribe_url=UNSUBSCRIBE,
    )
    assert variables["customer"]["first_name"] == "สมชาย"
    assert variables["customer"]["tags"] == ["vip"]
    assert variables["salesperson"] == {
        "name": "Alice Morgan",
        "email": "alice@acme.example",
        "first_name": "Alice",
    }
    assert variables["purchase"]["years_since"] == 3
    assert str(variables["purchase"]["amount"]) == "10.50"
    assert variables["unsubscribe_url"] == UNSUBSCRIBE
    assert variables["today"] == date(2024, 5, 31)
    assert "purchase" not in template_context(customer={"name": "x"}, salesperson={"name": "y"})
    assert "unsubscribe_url" not in template_context(customer={"name": "x"}, salesperson={"name": "y"})


# --- the command line -----------------------------------------------------------------------


def _cli(tmp_path: Path) -> tuple[CliRunner, typer.Typer, Path]:
    from mailcrm.cli import app as root
    from mailcrm.cli import templates
    from mailcrm.cli.context import AppContext

    config = tmp_path / "mailcrm.yaml"
    config.write_text(
        "database:\n  url: sqlite:///crm.db\ndefaults:\n  timezone: Asia/Bangkok\n  language: en\n"
        "salespeople:\n  - name: Alice Morgan\n    email: alice@acme.example\n"
        "  - name: สมศรี ใจงาม\n    email: somsri@acme.example\n    language: th\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    for args in (
        [
            *("customers", "add", "--name", "Somchai Jaidee", "--email", "somchai@example.co.th"),
            *("--owner", "somsri@acme.example"),
        ],
        [
            *("purchases", "add", "somchai@example.co.th", "--product", "Seminar ticket"),
            *("--amount", "3500", "--currency", "THB", "--date", "2023-05-01"),
        ],
    ):
        result = runner.invoke(root, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output

    harness = typer.Typer()

    @harness.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = AppContext(config_path=config)
        ctx.call_on_close(ctx.obj.close)

    harness.add_typer(templates.app, name="templates")
    return runner, harness, config


def test_cli_list_and_preview(tmp_path: Path) -> None:
    import json

    runner, harness, _ = _cli(tmp_path)
    listed = runner.invoke(harness, ["templates", "list", "--json", "--templates", str(SHIPPED)])
    assert listed.exit_code == 0, listed.output
    assert {row["name"] for row in json.loads(listed.stdout)} == NAMES

    shown = runner.invoke(
        harness,
        [
            *("templates", "preview", "thank_you", "--customer", "somchai@example.co.th"),
            *("--json", "--templates", str(SHIPPED)),
        ],
    )
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert set(data) == {"template", "language", "subject", "text", "html"}
    assert data["language"] == "th"  # the owner's language; the customer has none
    assert "Seminar ticket" in data["text"] and "สมศรี ใจงาม" in data["text"]
    assert "฿3,500.00" in data["text"]

    english = runner.invoke(
        harness,
        ["templates", "preview", "thank_you", "--customer", "1", "--language", "en"],  # shipped set
    )
    assert english.exit_code == 0, english.output
    assert "Subject: Thank you for your purchase, Somchai" in english.stdout
    assert "----- HTML -----" in english.stdout


def test_the_spy_sees_opens_and_processes(spy: list[str]) -> None:
    Path("/etc/hostname").exists()  # a stat, not an open
    with open(__file__, encoding="utf-8"):
        pass
    assert spy == [f"open {__file__}"]
