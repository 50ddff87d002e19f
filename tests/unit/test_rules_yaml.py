"""Rule files: what a salesperson writes, what the planner gets, every mistake named,
and no secrets in rule files."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcrm.domain.rules import (
    AfterPurchase,
    AnniversaryOf,
    NoPurchaseFor,
    NoReplyTo,
    OnDate,
    OnEvent,
    RuleSet,
    SendWindow,
    format_days,
    format_duration,
    parse_days,
    parse_duration,
)
from mailcrm.errors import ConfigError
from mailcrm.rules_yaml import RuleError, RuleWatcher, check_rules, load_rule_file, load_rules

TEMPLATES = ("thank_you", "anniversary", "birthday", "follow_up", "win_back", "campaign_spring")
TEAM = ("alice@acme.example", "bob@acme.example")
EXAMPLE = Path(__file__).parents[2] / "config" / "rules.example"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _load(folder: Path) -> RuleSet:
    return load_rules(folder, known_templates=TEMPLATES, salespeople=TEAM)


def _problems(folder: Path) -> str:
    with pytest.raises(RuleError) as info:
        _load(folder)
    return str(info.value)


# --- what a valid file gives the planner -------------------------------------------


def test_shipped_example_is_valid_with_the_five_templates() -> None:
    rules = load_rules(
        EXAMPLE,
        known_templates=["thank_you", "anniversary", "birthday", "follow_up", "win_back"],
        salespeople=["alice@acme.example"],
    )
    kinds = {rule.trigger.key for rule in rules.rules}
    assert kinds == {"after", "anniversary_of", "no_reply_to", "no_purchase_for", "on", "event"}
    assert all(rule.owner == "alice@acme.example" for rule in rules.rules)


def test_every_trigger_and_default(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "alice.yaml",
        """\
owner: Alice@Acme.example
send_window: {days: mon-fri, hours: "09:00-17:00"}
send_time: 10:00
rules:
  - name: thank-you
    when: {after: purchase, wait: 1d}
    template: thank_you
  - name: purchase-anniversary
    when: {anniversary_of: first_purchase, years: [1, 5, 10], leap_day: mar1}
    template: anniversary
  - name: birthday-card
    when: {anniversary_of: birthday}
    template: birthday
    send_window: any
    send_time: "08:30"
  - name: follow-up
    when: {no_reply_to: any_outbound, wait: 3d}
    repeat: {times: 2, every: 4d}
    template: follow_up
  - name: win-back
    when: {no_purchase_for: 180d}
    where: {tags: [VIP], lead_source: [seminar, referral], spend: {min: 1000, max: 50000.50, currency: thb}}
    template: win_back
  - name: spring-campaign
    when: {on: "2026-03-01T10:00"}
    where: {language: [th], status: [customer], owner: [bob@acme.example], bought: [Gold  Plan]}
    template: campaign_spring
    sender: bob@acme.example
    enabled: false
  - name: seminar-thanks
    when: {event: attended, wait: 36h}
    template: thank_you
    start: 2026-01-01
    end: "2026-06-30"
  - name: after-thanks
    when: {no_reply_to: thank-you, wait: 1w}
    template: follow_up
""",
    )
    rules = _load(tmp_path).by_name()
    weekdays = SendWindow(days=frozenset(range(5)), start=time(9), end=time(17))

    thanks = rules["thank-you"]
    assert thanks.trigger == AfterPurchase(wait=timedelta(days=1))
    assert thanks.send_window == weekdays and thanks.send_time == time(10)  # unquoted 10:00 is not 600
    assert thanks.owner == "alice@acme.example" and thanks.sender is None
    assert thanks.source == f"{tmp_path / 'alice.yaml'}:5"

    anniversary = rules["purchase-anniversary"].trigger
    assert anniversary == AnniversaryOf(field="first_purchase", years=frozenset({1, 5, 10}), leap_day="mar1")
    birthday = rules["birthday-card"]
    assert birthday.trigger == AnniversaryOf(field="birthday")
    assert birthday.send_window is None and birthday.send_time == time(8, 30)

    assert rules["follow-up"].trigger == NoReplyTo(
        source="any_outbound", wait=timedelta(days=3), repeat_times=2, repeat_every=timedelta(days=4)
    )
    assert rules["after-thanks"].trigger == NoReplyTo(
        source="thank-you", wait=timedelta(weeks=1), repeat_times=0, repeat_every=timedelta(weeks=1)
    )

    win_back = rules["win-back"]
    assert win_back.trigger == NoPurchaseFor(period=timedelta(days=180))
    assert win_back.filters.tags == {"vip"}
    assert win_back.filters.lead_sources == {"seminar", "referral"}
    assert (win_back.filters.spend_min_minor, win_back.filters.spend_max_minor) == (100000, 5000050)
    assert win_back.filters.spend_currency == "THB"

    campaign = rules["spring-campaign"]
    assert campaign.trigger == OnDate(at=datetime(2026, 3, 1, 10, 0))
    assert campaign.filters.languages == {"th"} and campaign.filters.statuses == {"customer"}
    assert campaign.filters.owners == {"bob@acme.example"} and campaign.filters.bought == {"Gold Plan"}
    assert campaign.sender == "bob@acme.example" and campaign.enabled is False

    seminar = rules["seminar-thanks"]
    assert seminar.trigger == OnEvent(kind="attended", wait=timedelta(hours=36))
    assert (seminar.start, seminar.end) == (date(2026, 1, 1), date(2026, 6, 30))
    assert seminar.active_on(date(2026, 6, 30)) and not seminar.active_on(date(2026, 7, 1))


def test_on_key_date_only_and_offset(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "c.yaml",
        """\
send_time: "11:15"
rules:
  - {name: a, when: {on: 2026-03-01}, template: thank_you}
  - {name: b, when: {on: "2026-03-01T10:00+07:00"}, template: thank_you}
  - {name: c, when: {on: 2026-03-01 10:00:00}, template: thank_you}
""",
    )
    rules = _load(tmp_path).by_name()
    assert rules["a"].trigger == OnDate(at=datetime(2026, 3, 1, 11, 15))
    at_b = rules["b"].trigger
    assert isinstance(at_b, OnDate) and at_b.at.utcoffset() == timedelta(hours=7)
    assert rules["c"].trigger == OnDate(at=datetime(2026, 3, 1, 10, 0))


def test_empty_file_and_empty_folder_are_no_rules(tmp_path: Path) -> None:
    _write(tmp_path, "empty.yaml", "# nothing yet\n")
    _write(tmp_path, ".#emacs-lock.yaml", "not: [valid")
    rules = _load(tmp_path)
    assert rules.rules == () and rules.files == (str(tmp_path / "empty.yaml"),)


# --- mistakes are named, with their line, column and field -----------------------


def test_unknown_template_has_position_field_and_suggestion(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "alice.yaml",
        """\
owner: alice@acme.example
rules:
  - name: welcome
    when: {after: purchase}
    template: thank_you
  - name: thank-you
    template: thank_yuo
    when: {after: purchase, wait: 1d}
""",
    )
    message = _problems(tmp_path)
    assert (
        f"{path}:7:15: rules.1.template: unknown template 'thank_yuo', did you mean 'thank_you'?" in message
    )
    assert "known templates: anniversary, birthday" in message


def test_typos_in_keys_get_suggestions(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "alice.yaml",
        """\
owner: alice@acme.example
send_windw: {days: mon-fri}
rules:
  - name: anniversary
    when: {anniversery_of: first_purchase}
    template: anniversary
  - name: win-back
    when: {no_purchase_for: 90d}
    where: {tag: [vip], langauge: [th]}
    templte: win_back
""",
    )
    message = _problems(tmp_path)
    assert (
        f"{path}:2:1: send_windw: unknown key 'send_windw' in a rule file, did you mean 'send_window'?"
        in (message)
    )
    assert (
        f"{path}:5:12: rules.0.when.anniversery_of: unknown key 'anniversery_of' in when, "
        "did you mean 'anniversary_of'?"
    ) in message
    assert "rules.1.where.tag: unknown key 'tag' in where, did you mean 'tags'?" in message
    assert "rules.1.where.langauge: unknown key 'langauge' in where, did you mean 'language'?" in message
    assert "rules.1.templte: unknown key 'templte' in a rule, did you mean 'template'?" in message
    assert "rules.1: a rule needs a `template:`" in message


def test_all_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "alice.yaml",
        """\
owner: alice@acme.exmple
rules:
  - name: thank-you
    when: {after: purchase, wait: 1 fortnight}
    template: thank_you
  - name: Birthday Card
    when: {anniversary_of: birthdy}
    template: birthday
    start: 2026-13-01
  - name: follow
    when: {no_reply_to: thank-yuo, wait: 3}
    template: follow_up
    sender: carol@acme.example
""",
    )
    _write(
        tmp_path,
        "bob.yaml",
        """\
send_window: {days: mon-fry, hours: "22:00-06:00"}
rules:
  - name: thank-you
    when: {event: atended}
    template: thank_you
""",
    )
    with pytest.raises(RuleError) as info:
        _load(tmp_path)
    error = info.value
    text = str(error)
    assert text.startswith(f"{len(error.problems)} problems in the rule files:")
    fields = [problem.field for problem in error.problems]
    assert fields == [
        "owner",
        "rules.0.when.wait",
        "rules.1.name",
        "rules.1.when.anniversary_of",
        "rules.1.start",
        "rules.2.when.no_reply_to",
        "rules.2.when.wait",
        "rules.2.sender",
        "send_window.days",
        "send_window.hours",
        "rules.0.name",
        "rules.0.when.event",
    ]
    assert "unknown owner 'alice@acme.exmple', did you mean 'alice@acme.example'?" in text
    assert "invalid duration '1 fortnight'" in text
    assert "invalid rule name 'Birthday Card'" in text and "e.g. 'birthday-card'" in text
    assert "unknown date field 'birthdy', did you mean 'birthday'?" in text
    assert "invalid start date '2026-13-01'" in text
    assert "no rule named 'thank-yuo', did you mean 'thank-you'?" in text
    assert "wait 3 has no unit" in text
    assert "unknown sender 'carol@acme.example'" in text
    assert "invalid day 'fry'" in text
    assert "overnight windows are not supported" in text
    assert f"rule name 'thank-you' is already used at {tmp_path / 'alice.yaml'}:3" in text
    assert "unknown event 'atended', did you mean 'attended'?" in text


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dup.yaml",
        "rules:\n  - name: a\n    when: {after: purchase}\n    template: thank_you\n    template: birthday\n",
    )
    message = _problems(tmp_path)
    assert f"{path}:5:5: duplicate key 'template'" in message


def test_python_tag_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write(
        tmp_path / "rules",
        "evil.yaml",
        f"rules:\n  - name: !!python/object/apply:os.system ['touch {marker}']\n"
        "    when: {after: purchase}\n    template: thank_you\n",
    )
    message = _problems(tmp_path / "rules")
    assert f"{path}:2:" in message and "python/object/apply" in message
    assert not marker.exists()


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    _write(tmp_path, "bomb.yaml", "\n".join(lines) + "\nrules: []\n")
    assert "alias bomb" in _problems(tmp_path)


def test_syntax_error_names_the_file_and_other_files_still_checked(tmp_path: Path) -> None:
    broken = _write(tmp_path, "a.yaml", "rules:\n  - name: x\n    when: {after: purchase\n")
    _write(tmp_path, "b.yaml", "rules:\n  - {name: y, when: {after: purchase}, template: nope}\n")
    message = _problems(tmp_path)
    assert f"{broken}:" in message and "not valid YAML" in message
    assert "unknown template 'nope'" in message


@pytest.mark.parametrize("key", ["password", "token", "secret", "smtp_password", "api_key"])
def test_secrets_are_refused_anywhere(tmp_path: Path, key: str) -> None:
    path = _write(
        tmp_path,
        "alice.yaml",
        f"""\
rules:
  - name: a
    when: {{after: purchase}}
    template: thank_you
    where: {{tags: [vip], {key}: hunter2}}
""",
    )
    message = _problems(tmp_path)
    assert f"{path}:5:26: rules.0.where.{key}: `{key}:` does not belong in a rule file" in message
    assert "hunter2" not in message
    assert "unknown key" not in message


def test_trigger_shape_mistakes(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "t.yaml",
        """\
rules:
  - {name: two, when: {after: purchase, no_purchase_for: 30d}, template: thank_you}
  - {name: opts, when: {after: purchase, years: [1]}, template: thank_you}
  - {name: rep, when: {after: purchase}, repeat: {times: 2}, template: thank_you}
  - {name: self, when: {no_reply_to: self, wait: 2d}, template: follow_up}
  - {name: nowait, when: {no_reply_to: any_outbound}, template: follow_up}
  - {name: zero, when: {no_purchase_for: 0d}, template: win_back}
  - {name: months, when: {no_purchase_for: 6mo}, template: win_back}
  - {name: empty, when: {}, template: win_back}
  - {name: many, when: {no_reply_to: any_outbound, wait: 1d}, repeat: {times: 50}, template: follow_up}
  - {name: years, when: {anniversary_of: birthday, years: [0]}, template: birthday}
  - {name: leap, when: {anniversary_of: birthday, leap_day: mar2}, template: birthday}
  - {name: custom, when: {anniversary_of: custom.wedding_day}, template: birthday}
  - {name: badcustom, when: {anniversary_of: "custom.9 x"}, template: birthday}
  - {name: past, when: {on: "2026-02-30T10:00"}, template: thank_you}
""",
    )
    message = _problems(tmp_path)
    assert "rules.0.when.no_purchase_for: one trigger per rule" in message
    assert "rules.1.when.years: `years` does not apply to `after`" in message
    assert "rules.2.repeat: `repeat` only applies to `no_reply_to` follow-ups" in message
    assert "rules.3.when.no_reply_to: a rule cannot follow up on itself" in message
    assert "rules.4.when: a follow-up needs a `wait:` longer than zero" in message
    assert "rules.5.when.no_purchase_for: duration '0d' must be longer than zero" in message
    assert "rules.6.when.no_purchase_for: invalid duration '6mo': months and years vary in length" in message
    assert "rules.7.when: `when:` needs a trigger" in message
    assert "rules.8.repeat.times: times must be a whole number from 1 to 10" in message
    assert "rules.9.when.years.0: years must be whole numbers from 1 to 200" in message
    assert "rules.10.when.leap_day: unknown leap_day 'mar2', did you mean 'mar1'?" in message
    assert "rules.11" not in message
    assert "rules.12.when.anniversary_of: invalid custom field name" in message
    assert "rules.13.when.on: invalid date-time '2026-02-30T10:00'" in message


def test_follow_up_loop_is_refused(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        """\
rules:
  - {name: first, when: {no_reply_to: second, wait: 2d}, template: follow_up}
""",
    )
    _write(
        tmp_path,
        "b.yaml",
        "rules:\n  - {name: second, when: {no_reply_to: first, wait: 2d}, template: follow_up}\n",
    )
    message = _problems(tmp_path)
    assert "follow-up rules form a loop (first -> second -> first)" in message
    assert message.count("form a loop") == 1


def test_filter_mistakes(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "f.yaml",
        """\
rules:
  - name: a
    when: {no_purchase_for: 90d}
    template: win_back
    where:
      status: [archived, leed]
      language: [xx-invalid-zz]
      owner: [carol@acme.example]
      spend: {min: 10.001, max: 5, currency: THB}
  - name: b
    when: {no_purchase_for: 90d}
    template: win_back
    where: {spend: {min: 10}}
""",
    )
    message = _problems(tmp_path)
    assert "rules.0.where.status.0: archived customers never get automated mail" in message
    assert "rules.0.where.status.1: unknown status 'leed', did you mean 'lead'?" in message
    assert "rules.0.where.language.0: unknown language tag" in message
    assert "rules.0.where.owner.0: unknown owner 'carol@acme.example'" in message
    assert "rules.0.where.spend.min: amount '10.001' has more decimals than THB allows" in message
    assert "rules.1.where.spend: spend needs a `currency:`" in message


def test_norwegian_and_numbers_are_read_as_written(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "n.yaml",
        "rules:\n  - {name: '2024', when: {after: purchase}, template: thank_you,\n"
        "     where: {language: [no], tags: [2024]}}\n",
    )
    rule = _load(tmp_path).by_name()["2024"]
    assert rule.filters.languages == {"no"} and rule.filters.tags == {"2024"}


def test_unknown_salespeople_are_not_checked_without_a_team(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "owner: someone@else.example\nrules: []\n")
    assert load_rules(tmp_path, known_templates=TEMPLATES, salespeople=None).rules == ()
    with pytest.raises(RuleError, match="unknown owner"):
        load_rules(tmp_path, known_templates=TEMPLATES, salespeople=[])


def test_missing_folder_and_wrong_shapes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rules folder not found"):
        _load(tmp_path / "nope")
    _write(tmp_path, "list.yaml", "- name: a\n")
    _write(tmp_path, "norules.yaml", "owner: alice@acme.example\n")
    _write(tmp_path, "scalar.yaml", "rules: thank-you\n")
    message = _problems(tmp_path)
    assert "a rule file must be a mapping" in message
    assert "missing `rules:`" in message
    assert "`rules:` must be a list" in message


def test_check_rules_returns_valid_rules_beside_problems(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "rules:\n  - {name: good, when: {after: purchase}, template: thank_you}\n")
    _write(tmp_path, "b.yaml", "rules:\n  - {name: good, when: {after: purchase}, template: birthday}\n")
    rules, problems = check_rules(tmp_path, known_templates=TEMPLATES, salespeople=TEAM)
    assert [rule.template for rule in rules.rules] == ["thank_you"]  # the first of a duplicated name
    assert len(problems) == 1 and problems[0].path == str(tmp_path / "b.yaml")


def test_load_rule_file_checks_one_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", "rules:\n  - {name: a, when: {after: purchase}, template: thank_you}\n")
    rules = load_rule_file(path, known_templates=TEMPLATES, salespeople=TEAM)
    assert [rule.name for rule in rules.rules] == ["a"] and rules.files == (str(path),)
    bad = _write(tmp_path, "b.yaml", "rules:\n  - {name: b, when: {after: purchase}, template: x}\n")
    with pytest.raises(RuleError) as info:
        load_rule_file(bad, known_templates=TEMPLATES, salespeople=TEAM)
    assert info.value.line == 2 and info.value.field == "rules.0.template"


# --- the watcher keeps the last good rule set ------------------------------------


def test_watcher_keeps_last_good_rules_when_an_edit_breaks_a_file(tmp_path: Path) -> None:
    calls: list[Path] = []

    def loader(folder: Path) -> RuleSet:
        calls.append(folder)
        return _load(folder)

    path = _write(
        tmp_path, "a.yaml", "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n"
    )
    watcher = RuleWatcher(tmp_path, loader)
    rules, error = watcher.reload_if_changed()
    assert [r.name for r in rules.rules] == ["one"] and error is None

    # Unchanged (and settled): no reload.
    old = path.stat().st_mtime_ns - 10_000_000_000
    os.utime(path, ns=(old, old))
    watcher.reload_if_changed()
    count = len(calls)
    assert watcher.reload_if_changed() == (rules, None) and len(calls) == count

    # Touched without a change: the content hash says nothing changed.
    os.utime(path, ns=(old + 1_000_000_000, old + 1_000_000_000))
    watcher.reload_if_changed()
    assert len(calls) == count

    path.write_text(
        "rules:\n  - {name: one, when: {after: purchase}, template: thank_yuo}\n", encoding="utf-8"
    )
    kept, error = watcher.reload_if_changed()
    assert kept is rules
    assert isinstance(error, ConfigError) and "did you mean 'thank_you'" in str(error)
    again, same_error = watcher.reload_if_changed()
    assert again is rules and same_error is error

    path.write_text(
        "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n"
        "  - {name: two, when: {after: purchase, wait: 2d}, template: thank_you}\n",
        encoding="utf-8",
    )
    fixed, error = watcher.reload_if_changed()
    assert [r.name for r in fixed.rules] == ["one", "two"] and error is None

    # A file removed is a change too; a new broken file keeps the set.
    _write(tmp_path, "b.yaml", "rules: [")
    kept, error = watcher.reload_if_changed()
    assert kept is fixed and error is not None


def test_watcher_starts_empty_when_first_load_fails(tmp_path: Path) -> None:
    folder = tmp_path / "missing"
    watcher = RuleWatcher(folder, _load)
    rules, error = watcher.reload_if_changed()
    assert rules.rules == () and error is not None and "rules folder not found" in str(error)
    assert watcher.reload_if_changed()[1] is error

    folder.mkdir()
    rules, error = watcher.reload_if_changed()
    assert rules.rules == () and error is None
    _write(folder, "a.yaml", "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n")
    rules, error = watcher.reload_if_changed()
    assert [r.name for r in rules.rules] == ["one"] and error is None


def test_watcher_names_a_deeply_nested_file_on_every_reload_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file nested 900 levels deep once escaped as a RecursionError without its name,
    and the watcher then never reported it again while the last rules kept running."""
    good = "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n"
    _write(tmp_path, "a.yaml", good)
    watcher = RuleWatcher(tmp_path, _load)
    rules, error = watcher.reload_if_changed()
    assert [r.name for r in rules.rules] == ["one"] and error is None
    caplog.set_level(logging.INFO, logger="mailcrm.rules_yaml.watch")

    deep = tmp_path / "deep.yaml"
    deep.write_text("rules:\n  - name: deep\n    when: " + "[" * 900 + "]" * 900 + "\n", encoding="utf-8")
    kept, error = watcher.reload_if_changed()
    assert kept is rules and error is not None
    # Unchanged files are not read again, so the same problem is not logged again.
    assert watcher.reload_if_changed() == (rules, error)
    # The second reload (another change, still broken; two levels a line): reported again.
    deep.write_text(
        "rules:\n" + "".join("  " * level + "- k:\n" for level in range(1, 900)), encoding="utf-8"
    )
    kept, error = watcher.reload_if_changed()
    assert kept is rules and error is not None

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"rule files have errors; keeping the last good rules: {deep}:3:72: nested deeper than 64 "
        "levels (hint: flatten the file: mailcrm's settings and rules need only a few levels)",
        f"rule files have errors; keeping the last good rules: {deep}:33:67: nested deeper than 64 "
        "levels (hint: flatten the file: mailcrm's settings and rules need only a few levels)",
    ]
    assert all(r.exc_info is None for r in caplog.records)

    caplog.clear()
    deep.write_text(good.replace("one", "two"), encoding="utf-8")
    fixed, error = watcher.reload_if_changed()
    assert [r.name for r in fixed.rules] == ["one", "two"] and error is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "rule files are valid again: 2 rule(s) loaded")
    ]


def test_watcher_logs_every_problem_of_a_reload_on_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "a.yaml", "rules: [")
    _write(tmp_path, "b.yaml", "rules:\n  - {name: one, when: {after: purchase}, template: thank_yuo}\n")
    _rules, error = RuleWatcher(tmp_path, _load).reload_if_changed()
    assert error is not None
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "\n" not in message
    assert f"{tmp_path / 'a.yaml'}:1:" in message and f"{tmp_path / 'b.yaml'}:2:" in message
    assert "; " in message


def test_watcher_retries_a_load_that_failed_unexpectedly(tmp_path: Path) -> None:
    """A loader that raises something other than a ConfigError is not silently forgotten."""
    _write(tmp_path, "a.yaml", "rules:\n  - {name: one, when: {after: purchase}, template: thank_you}\n")
    failures = [RuntimeError("disk hiccup")]

    def flaky(folder: Path) -> RuleSet:
        if failures:
            raise failures.pop()
        return _load(folder)

    watcher = RuleWatcher(tmp_path, flaky)
    with pytest.raises(RuntimeError):
        watcher.reload_if_changed()
    rules, error = watcher.reload_if_changed()
    assert [r.name for r in rules.rules] == ["one"] and error is None


# --- scalars -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("36h", timedelta(hours=36)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("180d", timedelta(days=180)),
        ("1d 12h", timedelta(hours=36)),
        ("3 days", timedelta(days=3)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@given(st.integers(min_value=0, max_value=3650 * 24 * 60))
def test_duration_text_round_trips(minutes: int) -> None:
    value = timedelta(minutes=minutes)
    assert parse_duration(format_duration(value)) == value


@given(st.frozensets(st.integers(min_value=0, max_value=6), min_size=1))
def test_days_text_round_trips(days: frozenset[int]) -> None:
    assert parse_days(format_days(days)) == days


def test_day_expressions() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon,wed,fri") == {0, 2, 4}
    assert parse_days(["sat", "Sunday"]) == {5, 6}
    assert parse_days("fri-mon") == {4, 5, 6, 0}
    assert parse_days("all") == frozenset(range(7))


# --- whatever is written, the loader answers with rules or with ConfigErrors --------

_KEYS = st.sampled_from(
    [
        "name",
        "when",
        "template",
        "where",
        "repeat",
        "send_window",
        "send_time",
        "sender",
        "enabled",
        "start",
        "end",
        "after",
        "anniversary_of",
        "no_reply_to",
        "no_purchase_for",
        "on",
        "event",
        "wait",
        "years",
        "leap_day",
        "tags",
        "status",
        "spend",
        "min",
        "currency",
        "days",
        "hours",
        "times",
        "every",
        "owner",
        "rules",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True)
    | st.dates()
    | st.sampled_from(
        ["purchase", "1d", "09:00-17:00", "mon-fri", "thank_you", "alice@acme.example", "birthday"]
    )
    | st.text(max_size=20)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=4),
    top=st.dictionaries(_KEYS, _VALUES, max_size=3),
)
def test_any_document_gives_rules_or_config_errors(
    tmp_path_factory: pytest.TempPathFactory, rules: list[dict[str, object]], top: dict[str, object]
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    document = {**top, "rules": rules}
    _write(folder, "f.yaml", yaml.safe_dump(document, allow_unicode=True))
    try:
        found, problems = check_rules(folder, known_templates=TEMPLATES, salespeople=TEAM)
    except ConfigError:  # pragma: no cover - check_rules reports, it does not raise
        raise AssertionError("check_rules raised instead of reporting") from None
    for problem in problems:
        assert problem.path == str(folder / "f.yaml")
    assert all(rule.name for rule in found.rules)
