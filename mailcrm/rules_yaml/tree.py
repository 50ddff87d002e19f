"""A rule file's node tree, rebuilt to keep what the plain data loses.

The safe loader of `mailcrm.yamlfile` gives plain data; this walk also keeps where each
*value* starts (errors point at `thank_yuo`, not at `template:`) and the text as written
(`send_time: 10:00` is the number 600 in YAML 1.1, and the key `on:` is the boolean true).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from mailcrm.errors import ConfigError
from mailcrm.yamlfile import PathKey, Position, compose, too_deep

_MAX_VALUES = 200_000
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass
class Tree:
    """The document as written: keys by their text, plus key and value positions."""

    data: Any
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)
    raw: dict[PathKey, str] = field(default_factory=dict)


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def walk(text: str, path: str) -> Tree:
    """Rebuild the document keeping raw key text and value positions.

    Runs the same refusals as `mailcrm.yamlfile` (it also runs when that loader stopped
    at an impossible date such as 2026-13-01, which is kept here as the text written so
    the field's own check reports it with its line).
    """
    node = compose(text, path)
    tree = Tree(data=None)
    if node is None:
        return tree
    constructor = yaml.constructor.SafeConstructor()
    count = 0

    def refuse(where: yaml.Node, message: str, hint: str | None = None) -> ConfigError:
        line, column = _mark(where)
        return ConfigError(message, path=path, line=line, column=column, hint=hint)

    def build(current: yaml.Node, loc: PathKey) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise refuse(current, "document expands to too many values (alias bomb?)")
        deep = too_deep(current, loc, path)
        if deep is not None:
            raise deep
        tree.values[loc] = _mark(current)
        if isinstance(current, yaml.MappingNode | yaml.SequenceNode) and current.tag not in _PLAIN_TAGS:
            raise refuse(current, f"unsupported YAML tag {current.tag}", "only plain YAML is accepted")
        if isinstance(current, yaml.MappingNode):
            constructor.flatten_mapping(current)
            result: dict[str, Any] = {}
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise refuse(key_node, "mapping keys must be plain scalars")
                name = str(key_node.value)
                if name in result:
                    raise refuse(key_node, f"duplicate key {name!r}", "each key may appear once in a mapping")
                child: PathKey = (*loc, name)
                tree.keys[child] = _mark(key_node)
                result[name] = build(value_node, child)
            return result
        if isinstance(current, yaml.SequenceNode):
            return [build(item, (*loc, index)) for index, item in enumerate(current.value)]
        tree.raw[loc] = str(current.value)
        try:
            return constructor.construct_object(current, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise refuse(
                current, f"unsupported YAML value: {exc.problem}", "only plain YAML is accepted"
            ) from None
        except (ValueError, OverflowError):
            return str(current.value)

    tree.data = build(node, ())
    return tree
