"""`mailcrm rules check` and `rules list` run as a user runs them: bad rule files named, through the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import CLI, Result

EXAMPLE = Path(__file__).parents[2] / "config" / "rules.example" / "alice.yaml"
TEMPLATES = ("thank_you", "anniversary", "birthday", "follow_up", "win_back")

RulesCLI = Callable[..., Result]


@pytest.fixture
def rules_cli(cli: CLI) -> RulesCLI:
    """The command line (the `rules` group is registered in `mailcrm.cli`)."""
    return cli


def _write_template(folder: Path, name: str) -> None:
    """The smallest template the renderer accepts: an English subject and text part."""
    (folder / name).mkdir(parents=True)
    (folder / name / "en.subject.j2").write_text("Hello\n", encoding="utf-8")
    (folder / name / "en.txt.j2").write_text("Hello {{ customer.first_name }}\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, rules_cli: RulesCLI) -> Path:
    """`mailcrm init config`, the five templates beside config/, and the example rules."""
    assert rules_cli("init", "config").code == 0
    for name in TEMPLATES:
        _write_template(tmp_path / "templates", name)
    shutil.copy(EXAMPLE, tmp_path / "config" / "rules" / "alice.yaml")
    return tmp_path


def _check(rules_cli: RulesCLI, *extra: str) -> Result:
    return rules_cli("--config", "config/mailcrm.yaml", "rules", "check", *extra)


def test_example_rules_pass(project: Path, rules_cli: RulesCLI) -> None:
    result = _check(rules_cli)
    assert result.code == 0, result.stderr
    assert "7 rule(s) in 1 file(s): all valid" in result.stderr

    data = _check(rules_cli, "--json").json()
    assert data["errors"] == []
    assert data["files"] == [str(Path("config/rules/alice.yaml").resolve())] or data["files"][0].endswith(
        "config/rules/alice.yaml"
    )
    first = data["rules"][0]
    assert {k: first[k] for k in ("name", "line", "template", "enabled")} == {
        "name": "thank-you",
        "line": 19,
        "template": "thank_you",
        "enabled": True,
    }
    assert first["trigger"] == "after purchase, wait 1d" and first["file"].endswith("alice.yaml")
    assert {rule["kind"] for rule in data["rules"]} == {
        "after",
        "anniversary_of",
        "no_reply_to",
        "no_purchase_for",
        "on",
        "event",
    }


def test_every_error_is_listed_with_position_and_exit_1(project: Path, rules_cli: RulesCLI) -> None:
    path = project / "config" / "rules" / "alice.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("template: thank_you\n", "template: thank_yuo\n", 1)
    text = text.replace("anniversary_of: first_purchase", "anniversery_of: first_purchase")
    path.write_text(text, encoding="utf-8")
    (project / "config" / "rules" / "bob.yaml").write_text(
        "rules:\n  - name: thank-you\n    when: {after: purchase, wait: 2x}\n    template: birthday\n"
        "    smtp: {password: hunter2}\n",
        encoding="utf-8",
    )

    result = _check(rules_cli)
    assert result.code == 1
    err = result.stderr
    assert (
        "alice.yaml:21:15: rules.0.template: unknown template 'thank_yuo', did you mean 'thank_you'?" in err
    )
    assert (
        "rules.1.when.anniversery_of: unknown key 'anniversery_of' in when, did you mean 'anniversary_of'?"
        in err
    )
    assert "bob.yaml:2:11: rules.0.name: rule name 'thank-you' is already used at" in err
    assert "bob.yaml:3:35: rules.0.when.wait: invalid duration '2x'" in err
    assert "bob.yaml:5:12: rules.0.smtp.password: `password:` does not belong in a rule file" in err
    assert "hunter2" not in err

    data = _check(rules_cli, "--json").json()
    assert len(data["errors"]) >= 5
    template_error = next(e for e in data["errors"] if e["field"] == "rules.0.template")
    assert (template_error["line"], template_error["column"]) == (21, 15)
    assert template_error["file"].endswith("alice.yaml")
    assert "did you mean 'thank_you'" in template_error["message"]
    # The rules that are fine are still listed.
    assert "follow-up" in {rule["name"] for rule in data["rules"]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("rules:\n  - name: a\n    name: b\n", "duplicate key 'name'"),
        ("rules: !!python/object/apply:os.system ['touch PWNED']\n", "python/object/apply"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 8)}]\n" for i in range(7)
            )
            + "rules: []\n",
            "alias bomb",
        ),
    ],
    ids=["duplicate-key", "python-tag", "alias-bomb"],
)
def test_unsafe_yaml_is_refused(project: Path, rules_cli: RulesCLI, content: str, expected: str) -> None:
    (project / "config" / "rules" / "evil.yaml").write_text(content, encoding="utf-8")
    result = _check(rules_cli)
    assert result.code == 1
    assert "evil.yaml:" in result.stderr and expected in result.stderr
    assert not (project / "PWNED").exists()


def test_list_shows_rules_and_refuses_broken_files(project: Path, rules_cli: RulesCLI) -> None:
    listed = rules_cli("--config", "config/mailcrm.yaml", "rules", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert [rule["name"] for rule in listed.json()][:2] == ["thank-you", "purchase-anniversary"]
    table = rules_cli("--config", "config/mailcrm.yaml", "rules", "list")
    assert table.code == 0 and "birthday-card" in table.stdout

    (project / "config" / "rules" / "broken.yaml").write_text("rules: [", encoding="utf-8")
    broken = rules_cli("--config", "config/mailcrm.yaml", "rules", "list")
    assert broken.code == 1 and "broken.yaml:" in broken.stderr


def test_dir_and_templates_options(tmp_path: Path, rules_cli: RulesCLI) -> None:
    rules_dir, templates = tmp_path / "my-rules", tmp_path / "tpl"
    rules_dir.mkdir()
    _write_template(templates, "thank_you")
    (templates / "half_done").mkdir()  # no parts yet: not a template the renderer can send
    (rules_dir / "x.yaml").write_text(
        "owner: anyone@example.com\nrules:\n  - {name: t, when: {after: purchase}, template: thank_you}\n",
        encoding="utf-8",
    )
    ok = rules_cli("rules", "check", "--dir", "my-rules", "--templates", "tpl")
    assert ok.code == 0, ok.stderr
    assert "owner and sender addresses are not checked" in ok.stderr  # no mailcrm.yaml here
    missing = rules_cli("rules", "check", "--dir", "my-rules", "--templates", "nowhere")
    assert missing.code == 1 and "no templates are known" in missing.stderr
    (rules_dir / "y.yaml").write_text(
        "owner: anyone@example.com\nrules:\n  - {name: h, when: {after: purchase}, template: half_done}\n",
        encoding="utf-8",
    )
    unfinished = rules_cli("rules", "check", "--dir", "my-rules", "--templates", "tpl")
    assert unfinished.code == 1 and "unknown template 'half_done'" in unfinished.stderr


def test_registered_in_the_main_cli(project: Path, cli: CLI) -> None:
    result = cli("--config", "config/mailcrm.yaml", "rules", "check")
    if result.code == 2 and "No such command" in result.stderr:
        pytest.skip("`rules` is not registered in mailcrm.cli yet")
    assert result.code == 0, result.stderr
