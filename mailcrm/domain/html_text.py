"""HTML mail bodies as plain text for timelines, snippets and body scanning.

Text extraction needs only tag names, text and entities, so this is a linear tokenizer
plus the stdlib's HTML5 entity table (`html.unescape`). `html.parser.HTMLParser` is not
used: in Python 3.11 its tag scanner is quadratic or worse on unterminated markup
(`"<a " * 100_000` runs for minutes, `"</" * 100_000` for seconds), and on well-formed
mail HTML it is five times slower than this, which matters for HTML-only mail at sync rates.
"""

from __future__ import annotations

import html
import re

MAX_HTML_CHARS = 2 * 1024 * 1024

# Elements whose content is not text a person reads (script and style are cut out first).
_SKIP = frozenset({"head", "title", "template", "xml"})
# Elements that start a new line.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})

# One token: a complete tag (group 1: '/', group 2: name), a declaration or processing
# instruction, a lone '<', or a run of text. Possessive runs keep it linear.
_TOKEN = re.compile(r"<(?:(/?)([A-Za-z][\w:.-]*+)[^<>]*+>|[!?][^<>]*+>)?|[^<]++")
_BREAK = "\x00"  # a line break made by markup, kept apart from whitespace in the text


def _cut(text: str, lowered: str, opener: str, closer: str) -> tuple[str, str]:
    """Remove every `opener ... closer` span with plain finds; an unterminated one hides the rest."""
    if opener not in lowered:
        return text, lowered
    kept: list[str] = []
    kept_lower: list[str] = []
    position = 0
    while True:
        start = lowered.find(opener, position)
        if start < 0:
            kept.append(text[position:])
            kept_lower.append(lowered[position:])
            break
        kept.append(text[position:start])
        kept_lower.append(lowered[position:start])
        end = lowered.find(closer, start + len(opener))
        if end < 0:
            break
        position = end + len(closer)
    return "".join(kept), "".join(kept_lower)


def _strip_unreadable(markup: str) -> str:
    """Drop comments (including Outlook's conditional ones), scripts and style sheets."""
    lowered = markup.lower()
    if len(lowered) != len(markup):  # a few characters change length when lower-cased
        lowered = "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in markup)
    text, lowered = _cut(markup, lowered, "<!--", "-->")
    text, lowered = _cut(text, lowered, "<script", "</script>")
    text, _ = _cut(text, lowered, "<style", "</style>")
    return text


def html_to_text(markup: str, limit: int = 256 * 1024) -> str:
    """Readable text of an HTML body, at most `limit` characters; block elements become lines."""
    parts: list[str] = []
    length = 0
    skip_depth = 0
    pre_depth = 0
    source = _strip_unreadable(markup[:MAX_HTML_CHARS].replace(_BREAK, ""))
    for match in _TOKEN.finditer(source):
        name = match.group(2)
        if name is None:
            if skip_depth:
                continue
            piece = match.group()
            if piece[0] == "<" and len(piece) > 1:
                continue  # a declaration
            if pre_depth:
                piece = piece.replace("\n", _BREAK)
        else:
            tag = name.lower()
            closing = match.group(1)
            if tag in _SKIP:
                skip_depth = max(0, skip_depth - 1) if closing else skip_depth + 1
                continue
            if tag == "body":
                skip_depth = 0  # an unclosed <head> or <title> must not hide the body
                continue
            if skip_depth:
                continue
            if tag == "br":
                piece = _BREAK
            elif tag == "li":
                if closing:
                    continue
                piece = _BREAK + "• "
            elif tag in _CELL:
                piece = " "
            elif tag in _BLOCK:
                if tag == "pre":
                    pre_depth = max(0, pre_depth - 1) if closing else pre_depth + 1
                piece = _BREAK
            else:
                continue
        parts.append(piece)
        length += len(piece)
        if length > limit * 2:  # entities shrink when unescaped; keep some slack
            break
    # Whitespace in text is layout-free; only breaks made by tags become newlines.
    lines: list[str] = []
    for segment in html.unescape("".join(parts)).split(_BREAK):
        line = " ".join(segment.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()[:limit]
