"""Email templates: one subject, text and HTML per template and language, rendered in a sandbox.

Layout: `templates/<name>/<language>.subject.j2`, `<language>.txt.j2` (optional when the
HTML exists: the text part is then made from the HTML) and `<language>.html.j2` (optional).
Folders starting with `_` hold shared layouts, not templates.

Templates are written by salespeople and may be hostile, so rendering is sandboxed
(jinja2's `ImmutableSandboxedEnvironment`, jinja2 >= 3.1.6 for CVE-2025-27516) and bounded:
no attribute starting with `_`, no `format`/`format_map`, a short list of string methods
and filters, capped `range`, `*`, `**`, call count, loop iterations and output size.
Any failure (a missing variable under `StrictUndefined`, a refused attribute, a limit)
raises `TemplateError` naming the file and line, so one bad email fails alone and the
process goes on. Compiled templates are cached per (name, language choice).
"""

from __future__ import annotations

from mailcrm.render.context import template_context
from mailcrm.render.errors import TemplateError
from mailcrm.render.helpers import (
    first_name,
    format_date,
    format_datetime,
    format_money,
    format_number,
    text_direction,
)
from mailcrm.render.renderer import RenderedEmail, TemplateRenderer
from mailcrm.render.sandbox import check_jinja2_version as check_jinja2_version  # runs the version check

__all__ = [
    "RenderedEmail",
    "TemplateError",
    "TemplateRenderer",
    "first_name",
    "format_date",
    "format_datetime",
    "format_money",
    "format_number",
    "template_context",
    "text_direction",
]
