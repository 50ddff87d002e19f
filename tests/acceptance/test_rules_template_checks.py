"""`rules check` and `templates list` on hostile or forgetful templates: a symlink leading out of
the templates folder is an error naming it; a body without the unsubscribe link is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, write_config, write_template

CONFIG = """\
salespeople:
  - name: Alice Morgan
    email: alice@acme.example
rules_dir: rules
templates_dir: templates
"""

RULES = """\
rules:
  - name: thank-you
    when: {after: purchase, wait: 1d}
    template: thank_you
  - name: hello
    when: {after: purchase, wait: 2d}
    template: hello
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_config(tmp_path, CONFIG)
    (tmp_path / "config" / "rules").mkdir()
    (tmp_path / "config" / "rules" / "alice.yaml").write_text(RULES, encoding="utf-8")
    templates = tmp_path / "config" / "templates"
    for name, body in (("thank_you", "Thanks!\n\n{{ unsubscribe_url }}\n"), ("hello", "Hello!\n")):
        write_template(templates, name, body, languages=("en", "th"))
    return tmp_path


def test_a_body_without_the_unsubscribe_link_is_a_warning(cli: CLI, project: Path) -> None:
    text = cli("--config", "config/mailcrm.yaml", "rules", "check")
    assert text.code == 0, text.stderr
    assert "2 rule(s) in 1 file(s): all valid" in text.stderr
    lines = [line for line in text.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2  # hello in en and th; thank_you shows the link
    assert (
        "alice.yaml:5: rule hello: template hello (th) has no unsubscribe link in its text part" in lines[1]
    )
    assert "the sender adds a one-line footer with the link" in lines[1]
    data = cli("--config", "config/mailcrm.yaml", "rules", "check", "--json").json()
    assert data["errors"] == []
    assert [(w["rule"], w["template"], w["language"], w["line"], w["parts"]) for w in data["warnings"]] == [
        ("hello", "hello", "en", 5, ["txt"]),
        ("hello", "hello", "th", 5, ["txt"]),
    ]


def test_a_symlink_out_of_the_templates_folder_is_an_error(cli: CLI, project: Path) -> None:
    secret = project / "secret.txt"
    secret.write_text("hunter2\n", encoding="utf-8")
    link = project / "config" / "templates" / "hello" / "th.txt.j2"
    link.unlink()
    link.symlink_to(secret)
    check = cli("--config", "config/mailcrm.yaml", "rules", "check")
    assert check.code == 1 and "Traceback" not in check.stderr
    assert f"templates/hello/th.txt.j2 is a symlink to {secret}, outside the templates folder" in check.stderr
    listed = cli("--config", "config/mailcrm.yaml", "templates", "list")
    assert listed.code == 1 and "templates/hello/th.txt.j2 is a symlink to" in listed.stderr
    assert "hunter2" not in check.stderr + check.stdout + listed.stderr + listed.stdout
