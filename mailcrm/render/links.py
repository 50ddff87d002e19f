"""Link tracking in the rendered parts, the text part made from HTML, and part clean-up.

Every http(s) link goes through the caller's rewriter except the unsubscribe URL.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Callable

from mailcrm.domain.html_text import html_to_text

_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE
)
_URL_TAIL = re.compile(r"""[^\s<>"'`]+""")  # what follows "http(s)://" in a bare URL
_ANCHOR = re.compile(
    r"""<a\b[^>]*?\shref\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>(.{0,2000}?)</a\s*>""", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]*>")


def _is_web(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _rewrite_html(markup: str, rewrite: Callable[[str], str], keep: str | None) -> str:
    def replace(match: re.Match[str]) -> str:
        raw = match[match.lastindex or 0]  # the one value group that matched
        url = (htmlmod.unescape(raw) if "&" in raw else raw).strip()
        if not _is_web(url) or url == keep:
            return match[0]
        return f'{match[1]}"{htmlmod.escape(rewrite(url), quote=True)}"'

    return _HREF.sub(replace, markup)


def _trim_url(found: str) -> str:
    """A bare URL without the sentence punctuation after it; a closing bracket stays if it is paired."""
    url = found
    while url and url[-1] in ".,;:!?)]}»":
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _rewrite_text(text: str, rewrite: Callable[[str], str], keep: str | None) -> str:
    """Every bare http(s) URL through `rewrite`; found from each "://", cheaper than a regex scan."""
    pieces: list[str] = []
    done = 0
    colon = text.find("://")
    while colon >= 0:
        scheme = text[max(0, colon - 5) : colon].lower()
        start = colon - 5 if scheme == "https" else colon - 4 if scheme.endswith("http") else -1
        tail = _URL_TAIL.match(text, colon + 3) if start >= done else None
        if tail is None:
            colon = text.find("://", colon + 3)
            continue
        found = text[start : tail.end()]
        if keep and found.startswith(keep):
            replacement = found
        else:
            url = _trim_url(found)
            replacement = rewrite(url) + found[len(url) :]
        pieces += (text[done:start], replacement)
        done = tail.end()
        colon = text.find("://", done)
    pieces.append(text[done:])
    return "".join(pieces)


def _text_from_html(markup: str) -> str:
    """Plain text for an HTML-only template: links keep their URL, as "label (url)"."""

    def inline(match: re.Match[str]) -> str:
        raw = match.group(1) if match.group(1) is not None else match.group(2)
        url = htmlmod.unescape(raw).strip()
        label = match.group(3)
        shown = " ".join(htmlmod.unescape(_TAG.sub("", label)).split())
        if not url or url.startswith("#") or shown == url:
            return label
        return f"{label} ({htmlmod.escape(url, quote=False)})"

    return html_to_text(_ANCHOR.sub(inline, markup))


_SUBJECT_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _clean_subject(subject: str) -> str:
    """One line: every run of whitespace, line break or control character becomes one space."""
    return " ".join(_SUBJECT_BREAKS.sub(" ", subject).split())


_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _clean_text(text: str) -> str:
    """LF line endings, no trailing spaces, no blank lines at either end, one final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    return text.rstrip(" \t").strip("\n") + "\n"
