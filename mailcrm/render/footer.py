"""The unsubscribe footer: every email shows its unsubscribe link, even when the template forgot it.

A template's body should show `unsubscribe_url` (the shipped ones do, in their `footer`
block). When a rendered part does not contain the link, one line is added at its end, in
the language of the email: a line of text in the text part, a small paragraph in the
HTML part (right-to-left for Persian). A part that shows the link gets nothing added,
so the link is never there twice.

`rules check` warns about such templates beforehand (`missing_in`): it reads the
template sources (and the layouts they extend or include) for a use of `unsubscribe_url`.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Sequence

import jinja2
from jinja2 import meta

from mailcrm.render.catalog import _candidates
from mailcrm.render.helpers import text_direction

UNSUBSCRIBE = "unsubscribe_url"

# (the question, the link label): the wording of the shipped templates' own footers.
FOOTERS: dict[str, tuple[str, str]] = {
    "en": ("Don't want these emails?", "Unsubscribe"),
    "th": ("ไม่ต้องการรับอีเมลลักษณะนี้?", "ยกเลิกการรับอีเมล"),
    "zh": ("不想再收到此类邮件？", "点此退订"),
    "fa": ("نمی‌خواهید این ایمیل‌ها را دریافت کنید؟", "لغو اشتراک"),
    "km": ("មិនចង់ទទួលអ៊ីមែលបែបនេះទៀតទេ?", "ឈប់ជាវ"),
}

_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def footer_language(languages: Sequence[str | None]) -> str:
    """The first of `languages` (or a shorter form of it, then English) with a footer wording."""
    return next(tag.lower() for tag in _candidates(languages) if tag.lower() in FOOTERS)


def footer_text(url: str, language: str) -> str:
    question, label = FOOTERS[language]
    return f"{question} {label}: {url}"


def footer_html(url: str, language: str) -> str:
    question, label = FOOTERS[language]
    direction = text_direction(language)
    align = "right" if direction == "rtl" else "left"
    link = htmlmod.escape(url, quote=True)
    return (
        f'<p dir="{direction}" lang="{language}" style="margin:16px 0 0;font-size:12px;line-height:1.6;'
        f'color:#6b7280;text-align:{align};">{htmlmod.escape(question)} '
        f'<a href="{link}" style="color:#6b7280;text-decoration:underline;">{htmlmod.escape(label)}</a></p>'
    )


def with_footer(
    text: str, html: str | None, url: str, languages: Sequence[str | None]
) -> tuple[str, str | None]:
    """`text` and `html` with the footer added to each part that does not show `url` yet."""
    language: str | None = None
    if url not in text:
        language = footer_language(languages)
        text = text.rstrip("\n") + "\n\n" + footer_text(url, language) + "\n"
    if html is not None and url not in html and htmlmod.escape(url, quote=True) not in html:
        language = language or footer_language(languages)
        paragraph = footer_html(url, language)
        ends = list(_BODY_END.finditer(html))
        if ends:
            at = ends[-1].start()
            html = html[:at] + paragraph + "\n" + html[at:]
        else:
            html = html.rstrip("\n") + "\n" + paragraph + "\n"
    return text, html


def mentions_unsubscribe(env: jinja2.Environment, file: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether template `file`, or a template it extends or includes, uses `unsubscribe_url`."""
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, file)
    tree = env.parse(source)
    if UNSUBSCRIBE in meta.find_undeclared_variables(tree):
        return True
    for other in meta.find_referenced_templates(tree):
        if other is None or other in seen or other == file:
            continue
        try:
            if mentions_unsubscribe(env, other, seen | {file}):
                return True
        except jinja2.TemplateNotFound:
            continue
    return False
