"""Server-rendered public pages: Jinja2 templates shipped in `mailcrm/web/templates/`.

Plain HTML that works without JavaScript, on a phone (viewport meta) and with a
keyboard or a screen reader (a `lang` and `dir` on the root, labelled controls, native
buttons). Autoescaping is on for every template; pages take plain values, never rows.
May import: `mailcrm.web.pages.texts`, jinja2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from mailcrm.web.pages.texts import RTL

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, language: str, **context: Any) -> str:
    """Template `name` in `language` (sets `lang` and `dir` for the page)."""
    direction = "rtl" if language in RTL else "ltr"
    return _ENV.get_template(name).render(lang=language, dir=direction, **context)
