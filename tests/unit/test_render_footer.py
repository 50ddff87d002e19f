"""Every email shows its unsubscribe link: a footer line is added where the template forgot it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcrm.render import TemplateRenderer, template_context

UNSUBSCRIBE = "https://crm.acme.example/u/tok123?a=1&b=2"

NO_LINK = {
    "plain/{lang}.subject.j2": "Hello",
    "plain/{lang}.txt.j2": "Hello {{ customer.name }}\n",
    "plain/{lang}.html.j2": "<html><body><p>Hello {{ customer.name }}</p></body></html>",
}
WITH_LINK = {
    "linked/en.subject.j2": "Hello",
    "linked/en.txt.j2": "Hello\n\nUnsubscribe: {{ unsubscribe_url }}\n",
    "linked/en.html.j2": '{% extends "_layout/base.html.j2" %}{% block body %}Hello{% endblock %}',
    "_layout/base.html.j2": (
        '<body>{% block body %}{% endblock %}<a href="{{ unsubscribe_url }}">stop</a></body>'
    ),
}


def _renderer(root: Path, *languages: str) -> TemplateRenderer:
    files = dict(WITH_LINK)
    for lang in languages:
        files.update({name.format(lang=lang): text for name, text in NO_LINK.items()})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return TemplateRenderer(root)


def _render(renderer: TemplateRenderer, name: str, language: str, url: str | None = UNSUBSCRIBE):  # type: ignore[no-untyped-def]
    context = template_context(
        customer={"name": "สมชาย ใจดี", "email": "somchai@example.co.th"},
        salesperson={"name": "Alice", "email": "alice@acme.example"},
        unsubscribe_url=url,
    )
    return renderer.render(name, languages=[language], context=context)


def test_a_thai_customer_gets_the_footer_in_thai(tmp_path: Path) -> None:
    email = _render(_renderer(tmp_path, "en", "th"), "plain", "th")
    assert email.language == "th"
    assert email.text.endswith(f"\n\nไม่ต้องการรับอีเมลลักษณะนี้? ยกเลิกการรับอีเมล: {UNSUBSCRIBE}\n")
    assert email.html is not None
    assert 'lang="th"' in email.html and "ยกเลิกการรับอีเมล</a></p>\n</body>" in email.html
    assert 'href="https://crm.acme.example/u/tok123?a=1&amp;b=2"' in email.html


@pytest.mark.parametrize(
    ("language", "words", "direction"),
    [
        ("en", "Unsubscribe", "ltr"),
        ("zh", "点此退订", "ltr"),
        ("fa", "لغو اشتراک", "rtl"),
        ("km", "ឈប់ជាវ", "ltr"),
    ],
)
def test_each_shipped_language_has_its_footer(
    tmp_path: Path, language: str, words: str, direction: str
) -> None:
    email = _render(_renderer(tmp_path, language), "plain", language)
    assert f"{words}: {UNSUBSCRIBE}" in email.text
    assert email.html is not None and f'dir="{direction}"' in email.html and words in email.html


def test_a_language_without_a_wording_falls_back_to_english(tmp_path: Path) -> None:
    email = _render(_renderer(tmp_path, "de"), "plain", "de")
    assert email.language == "de"
    assert email.text.endswith(f"Don't want these emails? Unsubscribe: {UNSUBSCRIBE}\n")


def test_a_template_with_the_link_gets_no_second_one(tmp_path: Path) -> None:
    email = _render(_renderer(tmp_path), "linked", "en")
    assert email.text.count(UNSUBSCRIBE) == 1 and "Don't want" not in email.text
    assert email.html is not None
    assert email.html.count("tok123") == 1 and "Don't want" not in email.html


def test_shipped_templates_get_no_footer() -> None:
    shipped = TemplateRenderer(Path(__file__).parents[2] / "templates")
    for name in shipped.names():
        assert shipped.unsubscribe_gaps(name) == []


def test_gaps_name_each_language_and_part(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, "en", "th")
    assert renderer.unsubscribe_gaps("plain") == [("en", ["txt", "html"]), ("th", ["txt", "html"])]
    assert renderer.unsubscribe_gaps("linked") == []  # the layout it extends shows the link


def test_without_an_unsubscribe_url_nothing_is_added(tmp_path: Path) -> None:
    email = _render(_renderer(tmp_path, "en"), "plain", "en", url=None)
    assert "Unsubscribe" not in email.text
