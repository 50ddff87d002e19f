"""A rules folder: every file parsed, then the checks across files (unique names, follow-ups)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.rules import ANY_OUTBOUND, Rule, RuleSet
from mailcrm.errors import ConfigError
from mailcrm.rules_yaml.parser import FileParser
from mailcrm.rules_yaml.tree import walk
from mailcrm.rules_yaml.triggers import Named
from mailcrm.rules_yaml.values import suggest
from mailcrm.textfile import MAX_SETTINGS_BYTES, read_text
from mailcrm.yamlfile import YamlValueError, load_text

RULE_FILE_SUFFIXES = (".yaml", ".yml")


class RuleError(ConfigError):
    """One or more problems in the rule files; `problems` holds each with its file and line."""

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            only = self.problems[0]
            super().__init__(only.message, hint=only.hint)
            self.path, self.line, self.column, self.field = only.path, only.line, only.column, only.field
        else:
            listed = "\n".join("  " + str(p).replace("\n", "\n  ") for p in self.problems)
            super().__init__(f"{len(self.problems)} problems in the rule files:\n{listed}")


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a folder, in name order; hidden files (editor backups) are skipped."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in RULE_FILE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


@dataclass
class _FileResult:
    path: str
    rules: list[Rule]
    problems: list[ConfigError]
    names: list[Named]
    references: list[Named]


def _parse_file(
    path: Path, known_templates: frozenset[str], salespeople: frozenset[str] | None
) -> _FileResult:
    shown = str(path)
    try:
        text = read_text(path, MAX_SETTINGS_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        return _FileResult(shown, [], [ConfigError(f"cannot read file: {exc}", path=shown)], [], [])
    try:
        load_text(text, shown)  # the safety checks: tags, duplicate keys, alias bombs, syntax
    except YamlValueError:
        pass  # an impossible date such as 2026-13-01: reported below with its field
    except ConfigError as exc:
        return _FileResult(shown, [], [exc], [], [])
    try:
        tree = walk(text, shown)
    except ConfigError as exc:
        return _FileResult(shown, [], [exc], [], [])
    parser = FileParser(shown, tree, known_templates, salespeople)
    parser.parse()
    return _FileResult(shown, parser.rules, parser.problems, parser.names, parser.references)


def _across_files(results: Sequence[_FileResult]) -> list[ConfigError]:
    """Rule names are unique across files; follow-ups name existing rules without a loop."""
    problems: list[ConfigError] = []
    first: dict[str, Named] = {}
    for result in results:
        for named in result.names:
            if named.name in first:
                other = first[named.name]
                where = other.document.position_of(other.loc)
                at = f"{other.document.path}:{where[0]}" if where else other.document.path
                problems.append(
                    named.document.error(
                        named.loc,
                        f"rule name {named.name!r} is already used at {at}",
                        hint="rule names must be unique across all rule files (they key the outbox)",
                    )
                )
            else:
                first[named.name] = named
    follows: dict[str, str] = {}
    for result in results:
        for ref in result.references:
            assert ref.source is not None
            if ref.source not in first:
                problems.append(
                    ref.document.error(
                        ref.loc,
                        f"no rule named {ref.source!r}{suggest(ref.source, [*first, ANY_OUTBOUND])}",
                        hint=f"name a rule from any rule file, or write {ANY_OUTBOUND}",
                    )
                )
            elif ref.name:
                follows[ref.name] = ref.source
    reported: set[str] = set()
    for result in results:
        for ref in result.references:
            chain, current = [ref.name], follows.get(ref.name)
            while current is not None and current not in chain:
                chain.append(current)
                current = follows.get(current)
            if current == ref.name and ref.name not in reported:
                reported.update(chain)
                loop = " -> ".join([*chain, ref.name])
                problems.append(
                    ref.document.error(
                        ref.loc,
                        f"follow-up rules form a loop ({loop})",
                        hint="a follow-up may follow another rule's mail, but not in a circle",
                    )
                )
    return problems


def check_rules(
    directory: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> tuple[RuleSet, list[ConfigError]]:
    """Every valid rule and every problem of a rules folder (for `rules check`).

    `salespeople` are the known salesperson emails; `None` skips that check (no
    configuration to check against).
    """
    shown = str(directory)
    if not directory.is_dir():
        problem = ConfigError(
            "rules folder not found",
            path=shown,
            hint="create it (`mailcrm init` makes one) or set rules_dir in mailcrm.yaml",
        )
        return RuleSet(), [problem]
    templates = frozenset(known_templates)
    people = None if salespeople is None else frozenset(normalize_address(p) for p in salespeople)
    results = [_parse_file(path, templates, people) for path in rule_files(directory)]
    problems = [p for result in results for p in result.problems] + _across_files(results)
    problems.sort(key=lambda p: (p.path or "", p.line or 0, p.column or 0))
    unique: dict[str, Rule] = {}
    for result in results:
        for rule in result.rules:
            unique.setdefault(rule.name, rule)  # a duplicated name (reported) keeps the first
    rules = tuple(unique.values())
    return RuleSet(rules=rules, files=tuple(r.path for r in results)), problems


def load_rules(
    directory: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> RuleSet:
    """All rule files of `directory`; raises `RuleError` listing every problem of every file."""
    rules, problems = check_rules(directory, known_templates=known_templates, salespeople=salespeople)
    if problems:
        raise RuleError(problems)
    return rules


def load_rule_file(
    path: Path,
    *,
    known_templates: Collection[str],
    salespeople: Collection[str] | None,
) -> RuleSet:
    """One rule file on its own (follow-ups may only name rules of the same file)."""
    people = None if salespeople is None else frozenset(normalize_address(p) for p in salespeople)
    result = _parse_file(path, frozenset(known_templates), people)
    problems = result.problems + _across_files([result])
    if problems:
        raise RuleError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    return RuleSet(rules=tuple(result.rules), files=(result.path,))
