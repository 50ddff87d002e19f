"""The template catalogue: which templates and languages a folder holds, and language fallback.

A requested tag falls back through its shorter forms (zh-Hant-TW, zh-Hant, zh) and
then to English.

Templates are written by salespeople, and a symlink could make a template of any file
the daemon can read (`/etc/passwd`, a secret file). Symlinks whose target stays inside
the templates folder are fine; one that resolves outside it is refused (`outside_links`):
the template it belongs to cannot render, and `rules check` and `templates` name the file.
The loader checks every file it opens again (`contained`), so a link made later is
refused too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailcrm.render.errors import TemplateError

_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_PART_FILE = re.compile(r"(?P<language>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.(?P<part>subject|txt|html)\.j2")


def scan_templates(templates_dir: Path) -> dict[str, dict[str, tuple[str, frozenset[str]]]]:
    """name -> lower-case language -> (language as written, parts present)."""
    index: dict[str, dict[str, tuple[str, frozenset[str]]]] = {}
    if not templates_dir.is_dir():
        raise TemplateError(f"templates folder {templates_dir} does not exist")
    for folder in sorted(templates_dir.iterdir()):
        if not folder.is_dir() or not _TEMPLATE_NAME.fullmatch(folder.name):
            continue
        parts: dict[str, tuple[str, set[str]]] = {}
        for file in folder.iterdir():
            match = _PART_FILE.fullmatch(file.name)
            if match and file.is_file():
                language = match.group("language")
                parts.setdefault(language.lower(), (language, set()))[1].add(match.group("part"))
        languages = {
            key: (language, frozenset(found))
            for key, (language, found) in parts.items()
            if "subject" in found and found & {"txt", "html"}
        }
        if languages:
            index[folder.name] = languages
    return index


def _candidates(languages: Sequence[str | None]) -> Iterator[str]:
    """Each preferred tag, then its shorter forms (zh-Hant-TW, zh-Hant, zh), then English."""
    for tag in (*languages, "en"):
        if not tag:
            continue
        parts = tag.replace("_", "-").split("-")
        for size in range(len(parts), 0, -1):
            yield "-".join(parts[:size])


def _request_of(candidate: str, languages: Sequence[str | None]) -> list[str]:
    """The requested tags that `candidate` was derived from, most specific first."""
    wanted = candidate.lower()
    found: list[str] = []
    for tag in (*languages, "en"):
        if not tag:
            continue
        spelled = tag.replace("_", "-")
        if spelled.lower() == wanted or spelled.lower().startswith(wanted + "-"):
            found.append(spelled)
            break
    found.append(candidate)
    return found


def contained(templates_dir: Path, path: Path) -> bool:
    """Whether `path`, links followed, is inside the (resolved) templates folder."""
    root = os.path.realpath(templates_dir)
    target = os.path.realpath(path)
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def link_error(templates_dir: Path, link: Path) -> TemplateError:
    """The refusal of a symlink that leads out of the templates folder, naming the link."""
    shown = link.relative_to(templates_dir) if link.is_relative_to(templates_dir) else link
    return TemplateError(
        f"{templates_dir.name}/{shown} is a symlink to {os.path.realpath(link)}, outside the templates "
        f"folder {templates_dir}: refused",
        template=shown.parts[0] if shown.parts else None,
        hint="copy the file into the templates folder, or link only to files inside it",
    )


def outside_links(templates_dir: Path) -> dict[str, list[TemplateError]]:
    """Template (or layout) folder name -> its symlinks that resolve outside `templates_dir`."""
    found: dict[str, list[TemplateError]] = {}
    if not templates_dir.is_dir():
        return found
    for folder, dirs, files in os.walk(templates_dir):
        base = Path(folder)
        for entry in sorted([*dirs, *files]):
            path = base / entry
            if path.is_symlink() and not contained(templates_dir, path):
                error = link_error(templates_dir, path)
                found.setdefault(error.template or entry, []).append(error)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]  # inside ones are walked as themselves
    return found
