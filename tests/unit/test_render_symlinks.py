"""A symlink in the templates folder may point inside it, never outside (a secret, /etc/passwd)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailcrm.render import TemplateError, TemplateRenderer, template_context


def _context() -> dict[str, object]:
    return template_context(
        customer={"name": "Ann", "email": "ann@example.org"},
        salesperson={"name": "Alice", "email": "alice@acme.example"},
        unsubscribe_url="https://crm.acme.example/u/t",
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "templates", tmp_path / "outside"
    (root / "hello").mkdir(parents=True)
    (root / "hello" / "en.subject.j2").write_text("Hello", encoding="utf-8")
    (root / "hello" / "en.txt.j2").write_text("Hello {{ unsubscribe_url }}\n", encoding="utf-8")
    outside.mkdir()
    (outside / "secret.txt").write_text("db password: hunter2\n", encoding="utf-8")
    return root, outside


def test_a_file_linking_outside_is_refused_naming_it(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (root / "leak").mkdir()
    (root / "leak" / "en.subject.j2").write_text("Hi", encoding="utf-8")
    (root / "leak" / "en.txt.j2").symlink_to(outside / "secret.txt")
    renderer = TemplateRenderer(root)
    with pytest.raises(TemplateError) as info:
        renderer.render("leak", languages=["en"], context=_context())
    message = str(info.value)
    assert (
        f"templates/leak/en.txt.j2 is a symlink to {outside / 'secret.txt'}, outside the templates" in message
    )
    assert "hunter2" not in message
    assert [error.template for error in renderer.refused()] == ["leak"]
    assert renderer.render("hello", languages=["en"], context=_context()).text.startswith("Hello")


def test_a_folder_linking_outside_is_refused(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (outside / "evil").mkdir()
    (outside / "evil" / "en.subject.j2").write_text("Hi", encoding="utf-8")
    (outside / "evil" / "en.txt.j2").write_text("{{ unsubscribe_url }}", encoding="utf-8")
    (root / "evil").symlink_to(outside / "evil")
    renderer = TemplateRenderer(root)
    with pytest.raises(TemplateError, match=r"templates/evil is a symlink to"):
        renderer.render("evil", languages=["en"], context=_context())


def test_a_layout_linked_in_later_is_refused_when_loaded(folders: tuple[Path, Path]) -> None:
    """The loader checks each file it opens, so a link made after start-up is refused too."""
    root, outside = folders
    (root / "framed").mkdir()
    (root / "framed" / "en.subject.j2").write_text("Hi", encoding="utf-8")
    (root / "framed" / "en.html.j2").write_text('{% include "_parts/footer.j2" %}', encoding="utf-8")
    renderer = TemplateRenderer(root)
    (root / "_parts").mkdir()
    (root / "_parts" / "footer.j2").symlink_to(outside / "secret.txt")
    with pytest.raises(TemplateError, match=r"_parts/footer\.j2 is a symlink to"):
        renderer.render("framed", languages=["en"], context=_context())


def test_links_inside_the_folder_are_fine(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    (root / "hello" / "th.subject.j2").symlink_to(root / "hello" / "en.subject.j2")
    (root / "hello" / "th.txt.j2").symlink_to("en.txt.j2")  # relative
    (root / "greeting").symlink_to("hello")
    linked_root = root.parent / "templates-link"
    os.symlink(root, linked_root)  # the folder itself may be a link (the shipped one is)
    for folder in (root, linked_root):
        renderer = TemplateRenderer(folder)
        assert renderer.refused() == []
        assert renderer.render("greeting", languages=["th"], context=_context()).language == "th"
