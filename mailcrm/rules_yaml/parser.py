"""One rule file: its defaults, then each rule with its name, template, trigger and filters."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import time
from typing import Any

from mailcrm.domain.rules import DEFAULT_SEND_TIME, Filters, Rule, SendWindow, check_rule_name
from mailcrm.errors import MailcrmError
from mailcrm.rules_yaml.filters import FilterReader
from mailcrm.rules_yaml.tree import Tree
from mailcrm.rules_yaml.triggers import Named, TriggerReader
from mailcrm.rules_yaml.values import SECRET_KEY, suggest
from mailcrm.yamlfile import PathKey

TOP_KEYS = ("owner", "sender", "send_window", "send_time", "rules")
RULE_KEYS = (
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
)


@dataclass(frozen=True)
class _Defaults:
    owner: str | None = None
    sender: str | None = None
    window: SendWindow | None = None
    send_time: time = DEFAULT_SEND_TIME


class FileParser(TriggerReader, FilterReader):
    """Validates one rule file, collecting every problem instead of stopping at the first."""

    def __init__(
        self,
        path: str,
        tree: Tree,
        known_templates: frozenset[str],
        salespeople: frozenset[str] | None,
    ) -> None:
        super().__init__(path, tree, salespeople)
        self.known_templates = known_templates
        self.rules: list[Rule] = []
        self.names: list[Named] = []

    def parse(self) -> None:
        data = self.tree.data
        self.refuse_secrets(data, ())
        if data is None:
            return
        top = self.mapping(data, (), "a rule file")
        if top is None:
            return
        self.only_keys(top, (), TOP_KEYS, "a rule file")
        defaults = _Defaults(
            owner=self.salesperson(top["owner"], ("owner",), "owner") if "owner" in top else None,
            sender=self.salesperson(top["sender"], ("sender",), "sender") if "sender" in top else None,
            window=self.window(top["send_window"], ("send_window",)) if "send_window" in top else None,
            send_time=(
                self.clock_time(top["send_time"], ("send_time",)) or DEFAULT_SEND_TIME
                if "send_time" in top
                else DEFAULT_SEND_TIME
            ),
        )
        if "rules" not in top:
            self.fail((), "missing `rules:` (the list of rules)", hint="see config/rules.example/alice.yaml")
            return
        items = top["rules"]
        if items is None:
            return
        if not isinstance(items, list):
            self.fail(("rules",), "`rules:` must be a list (each rule starts with `- name:`)")
            return
        for index, item in enumerate(items):
            rule = self.rule(item, ("rules", index), defaults)
            if rule is not None:
                self.rules.append(rule)

    def refuse_secrets(self, value: Any, loc: PathKey) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if SECRET_KEY.search(key):
                    self.fail(
                        (*loc, key),
                        f"`{key}:` does not belong in a rule file: secrets never go in rules",
                        hint="remove it; mailbox credentials are set in mailcrm.yaml with "
                        "password_env or password_file",
                        key=True,
                    )
                else:
                    self.refuse_secrets(item, (*loc, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.refuse_secrets(item, (*loc, index))

    def rule(self, item: Any, loc: PathKey, defaults: _Defaults) -> Rule | None:
        mapping = self.mapping(item, loc, "a rule")
        if mapping is None:
            return None
        before = len(self.problems)
        self.only_keys(mapping, loc, RULE_KEYS, "a rule")
        name = self.rule_name(mapping, loc)
        template = self.template(mapping, loc)
        send_time = (
            self.clock_time(mapping["send_time"], (*loc, "send_time"))
            if "send_time" in mapping
            else defaults.send_time
        )
        trigger = self.trigger(mapping, loc, name, send_time or DEFAULT_SEND_TIME)
        filters = self.filters(mapping["where"], (*loc, "where")) if "where" in mapping else Filters()
        window = (
            self.window(mapping["send_window"], (*loc, "send_window"))
            if "send_window" in mapping
            else defaults.window
        )
        sender = (
            self.salesperson(mapping["sender"], (*loc, "sender"), "sender")
            if "sender" in mapping
            else defaults.sender
        )
        enabled = mapping.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail((*loc, "enabled"), "enabled must be true or false")
        start = self.day(mapping["start"], (*loc, "start"), "start date") if "start" in mapping else None
        end = self.day(mapping["end"], (*loc, "end"), "end date") if "end" in mapping else None
        if start is not None and end is not None and end < start:
            self.fail((*loc, "end"), f"end date {end} is before start date {start}")
        if len(self.problems) > before or name is None or template is None or trigger is None:
            return None
        if filters is None or send_time is None:
            return None
        line = self.value_doc.position_of(loc)
        return Rule(
            name=name,
            trigger=trigger,
            template=template,
            filters=filters,
            send_window=window,
            send_time=send_time,
            sender=sender,
            owner=defaults.owner,
            enabled=bool(enabled),
            start=start,
            end=end,
            source=f"{self.path}:{line[0] if line else 0}",
        )

    def rule_name(self, mapping: dict[str, Any], loc: PathKey) -> str | None:
        if "name" not in mapping:
            self.fail(
                loc, "a rule needs a `name:`", hint="e.g. name: thank-you (unique across all rule files)"
            )
            return None
        text = self.text(mapping["name"], (*loc, "name"), "name")
        if text is None:
            return None
        try:
            name = check_rule_name(text)
        except MailcrmError as exc:
            self.bad((*loc, "name"), exc)
            return None
        self.names.append(Named(name, self.value_doc, (*loc, "name")))
        return name

    def template(self, mapping: dict[str, Any], loc: PathKey) -> str | None:
        if "template" not in mapping:
            self.fail(loc, "a rule needs a `template:`", hint=_templates_hint(self.known_templates))
            return None
        name = self.text(mapping["template"], (*loc, "template"), "template")
        if name is None:
            return None
        if name not in self.known_templates:
            self.fail(
                (*loc, "template"),
                f"unknown template {name!r}{suggest(name, self.known_templates)}",
                hint=_templates_hint(self.known_templates),
            )
            return None
        return name


def _templates_hint(known: Collection[str]) -> str:
    if not known:
        return "no templates are known: create templates/<name>/ (or pass --templates DIR)"
    return f"known templates: {', '.join(sorted(known))}"
