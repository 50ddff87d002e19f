"""TemplateRenderer: picks a template's language, renders its parts in the sandbox, reports failures.

Compiled templates are cached per (name, language choice) for the renderer's life.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import GeneratorType, TracebackType
from typing import Any

import jinja2
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError, UndefinedError

from mailcrm.render.budget import _STATE, MAX_OUTPUT, _RenderState
from mailcrm.render.catalog import _candidates, _request_of, outside_links, scan_templates
from mailcrm.render.errors import TemplateError, _LimitError
from mailcrm.render.footer import mentions_unsubscribe, with_footer
from mailcrm.render.helpers import _known_locale, _zone, text_direction
from mailcrm.render.links import _clean_subject, _clean_text, _rewrite_html, _rewrite_text, _text_from_html
from mailcrm.render.sandbox import _make_environment


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One rendered email: the template and language used, and the three parts."""

    template: str
    language: str
    subject: str
    text: str
    html: str | None


@dataclass(frozen=True, slots=True)
class _Choice:
    name: str
    language: str  # the template files used
    locale_tag: str  # formatting locale: the most specific requested tag that led there
    direction: str
    subject: jinja2.Template
    text: jinja2.Template | None
    html: jinja2.Template | None


def _position(output: Iterator[str]) -> tuple[str | None, int | None]:
    """The template file and line a suspended render generator stopped at."""
    generator: Any = output
    while isinstance(getattr(generator, "gi_yieldfrom", None), GeneratorType):
        generator = generator.gi_yieldfrom
    frame = getattr(generator, "gi_frame", None)
    if frame is None:
        return None, None
    template = frame.f_globals.get("__jinja_template__")
    if template is None:
        return None, None
    return template.filename, template.get_corresponding_lineno(frame.f_lineno)


class TemplateRenderer:
    """Renders the templates of one folder; compiled templates are kept for the renderer's life."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = Path(templates_dir)
        self._env = _make_environment(self.templates_dir)
        self._index = scan_templates(self.templates_dir)
        self._refused = outside_links(self.templates_dir)
        self._choices: dict[tuple[str, tuple[str | None, ...]], _Choice] = {}

    def names(self) -> frozenset[str]:
        """The templates found: folders with at least one complete language."""
        return frozenset(self._index)

    def languages(self, name: str) -> frozenset[str]:
        """The languages `name` exists in, as their files spell them."""
        return frozenset(language for language, _ in self._known(name).values())

    def refused(self) -> list[TemplateError]:
        """Every symlink in the folder that leads outside it (their templates cannot render)."""
        return [error for errors in self._refused.values() for error in errors]

    def _known(self, name: str) -> dict[str, tuple[str, frozenset[str]]]:
        if name in self._refused:
            raise self._refused[name][0]
        try:
            return self._index[name]
        except KeyError:
            known = ", ".join(sorted(self._index)) or "none"
            raise TemplateError(
                f"no template named {name!r} in {self.templates_dir} (known: {known})",
                template=name,
                hint="each template is a folder holding <language>.subject.j2 and .txt.j2 or .html.j2",
            ) from None

    def _choose(self, name: str, languages: tuple[str | None, ...]) -> _Choice:
        key = (name, languages)
        choice = self._choices.get(key)
        if choice is not None:
            return choice
        available = self._known(name)
        tried: list[str] = []
        for candidate in _candidates(languages):
            tried.append(candidate)
            found = available.get(candidate.lower())
            if found is None:
                continue
            language, parts = found
            requested = next(
                (tag for tag in _request_of(candidate, languages) if _known_locale(tag)),
                language if _known_locale(language) else "en",
            )
            choice = _Choice(
                name=name,
                language=language,
                locale_tag=requested,
                direction=text_direction(language),
                subject=self._compile(name, language, "subject"),
                text=self._compile(name, language, "txt") if "txt" in parts else None,
                html=self._compile(name, language, "html") if "html" in parts else None,
            )
            if len(self._choices) > 10_000:
                self._choices.clear()
            self._choices[key] = choice
            return choice
        raise TemplateError(
            f"template {name!r} has none of the languages {', '.join(dict.fromkeys(tried))}",
            template=name,
            hint=f"it exists in: {', '.join(sorted(self.languages(name)))}",
        )

    def _display(self, filename: str | None) -> str | None:
        if filename is None:
            return None
        try:
            return str(Path(filename).relative_to(self.templates_dir.parent))
        except ValueError:
            return filename

    def _compile(self, name: str, language: str, part: str) -> jinja2.Template:
        file = f"{name}/{language}.{part}.j2"
        try:
            template = self._env.get_template(file)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}",
                template=name,
                path=self._display(exc.filename) or f"{self.templates_dir.name}/{file}",
                line=exc.lineno,
            ) from exc
        except TemplateNotFound as exc:
            raise TemplateError(f"template file not found: {exc.name}", template=name) from exc
        # The same keys as jinja2's ChainMap over the environment's globals, which every new
        # render context would otherwise copy key by key.
        template.globals = self._env.globals
        return template

    def _run(self, name: str, template: jinja2.Template, variables: dict[str, Any]) -> str:
        try:
            context = template.new_context(variables, shared=True)  # globals are already merged in
            pieces: list[str] = []
            size = 0
            output = template.root_render_func(context)
            for piece in output:
                size += len(piece)
                if size > MAX_OUTPUT:
                    path, line = _position(output)
                    raise TemplateError(
                        f"output over {MAX_OUTPUT} characters",
                        template=name,
                        path=self._display(path),
                        line=line,
                    )
                pieces.append(piece)
            return "".join(pieces)
        except TemplateError:
            raise
        except Exception as exc:  # any failure inside a template fails this email only
            raise self._failure(name, template, exc) from exc

    def _failure(self, name: str, template: jinja2.Template, exc: Exception) -> TemplateError:
        """A TemplateError naming the innermost template file and line where `exc` happened."""
        tb: TracebackType | None = exc.__traceback__
        try:
            self._env.handle_exception()  # re-raises with template frames in the traceback
        except Exception as rewritten:
            tb = rewritten.__traceback__
        path, line = template.filename, None
        root = str(self.templates_dir)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root) and filename.endswith(".j2"):
                path, line = filename, tb.tb_lineno
            tb = tb.tb_next
        if isinstance(exc, TemplateSyntaxError):
            path, line = exc.filename or path, exc.lineno
        if isinstance(exc, UndefinedError | _LimitError | jinja2.TemplateError):
            message = str(exc)
        elif isinstance(exc, RecursionError):
            message = "too deeply nested (recursion)"
        else:
            message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, UndefinedError):
            hint = "the variable is not in the template context; see templates/README.md"
        else:
            hint = None
        return TemplateError(message, template=name, path=self._display(path), line=line, hint=hint)

    def render(
        self,
        name: str,
        *,
        languages: Sequence[str],
        context: Mapping[str, Any],
        link_rewriter: Callable[[str], str] | None = None,
        timezone: str = "UTC",
    ) -> RenderedEmail:
        """Render template `name` in the first available language of `languages` (then English).

        The context gains `language` and `text_direction`. With `link_rewriter`, every
        http(s) link in the HTML (and every bare URL in a text template) goes through it,
        except `context["unsubscribe_url"]`, which a part that does not show it gets as a
        one-line footer (`render.footer`).
        """
        choice = self._choose(name, tuple(languages))
        _zone(timezone)
        variables = {
            **self._env.globals,
            **context,
            "language": choice.language,
            "text_direction": choice.direction,
        }
        token = _STATE.set(_RenderState(choice.locale_tag, timezone))
        try:
            subject = _clean_subject(self._run(name, choice.subject, variables))
            html = self._run(name, choice.html, variables) if choice.html is not None else None
            text = self._run(name, choice.text, variables) if choice.text is not None else None
        finally:
            _STATE.reset(token)
        if not subject:
            raise TemplateError(
                "the subject is empty after rendering",
                template=name,
                path=self._display(choice.subject.filename),
                hint="a subject must contain some text whatever the customer's data",
            )
        keep = context.get("unsubscribe_url")
        keep = keep if isinstance(keep, str) else None
        if html is not None and link_rewriter is not None:
            html = _rewrite_html(html, link_rewriter, keep)
        if text is None:
            assert html is not None
            text = _text_from_html(html)
        elif link_rewriter is not None:
            text = _rewrite_text(text, link_rewriter, keep)
        if keep:  # every email shows its unsubscribe link: added where the template forgot it
            text, html = with_footer(text, html, keep, (choice.language, *languages))
        return RenderedEmail(name, choice.language, subject, _clean_text(text), html)

    def syntax_errors(self, name: str) -> list[TemplateError]:
        """Every file of `name` (each language, subject and body parts) that does not compile,
        with its file and line: `rules check` lists them instead of the first email failing."""
        errors: list[TemplateError] = []
        for language, parts in sorted(self._known(name).values()):
            for part in ("subject", "txt", "html"):
                if part == "subject" or part in parts:
                    try:
                        self._compile(name, language, part)
                    except TemplateError as exc:
                        errors.append(exc)
        return errors

    def unsubscribe_gaps(self, name: str) -> list[tuple[str, list[str]]]:
        """(language, body parts) of `name` whose source never uses `unsubscribe_url`; the
        sender adds a footer line to those (`render.footer`), `rules check` warns about them.
        A part that does not compile is left out: `syntax_errors` reports it."""
        gaps: list[tuple[str, list[str]]] = []
        for language, parts in sorted(self._known(name).values()):
            missing: list[str] = []
            for part in ("txt", "html"):
                if part not in parts:
                    continue
                try:
                    if not mentions_unsubscribe(self._env, f"{name}/{language}.{part}.j2"):
                        missing.append(part)
                except TemplateSyntaxError:
                    continue
            if missing:
                gaps.append((language, missing))
        return gaps
