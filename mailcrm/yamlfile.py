"""Safe YAML loading that remembers where every value came from.

Configuration and rule errors must name file:line:column, so values are built from
PyYAML's node tree (safe loader only: no Python tags), duplicate keys are refused and
alias expansion is bounded (no "billion laughs").

Nesting is bounded too: PyYAML composes a document recursively (about two Python frames
per level, so a file nested ~490 levels deep hits the interpreter's recursion limit and
fails with a RecursionError that names no file). The composer below counts its depth
and refuses a document nested deeper than `MAX_DEPTH` at the line where it passes the
limit; the builders refuse the same depth reached through aliases (`*name` inside
`&name`, or chains of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailcrm.errors import ConfigError
from mailcrm.textfile import MAX_SETTINGS_BYTES, NotATextFile, read_text

Position = tuple[int, int]
"""1-based line and column."""

PathKey = tuple[str | int, ...]

_MAX_NODES = 200_000
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings accepted; mailcrm's own files need fewer than 10."""
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_DEPTH_HINT = "flatten the file: mailcrm's settings and rules need only a few levels"


@dataclass
class YamlDocument:
    """Plain Python data plus the position of every mapping key and value."""

    path: str
    data: Any
    positions: dict[PathKey, Position] = field(default_factory=dict)

    def position_of(self, loc: Sequence[str | int]) -> Position | None:
        """Position of the deepest known prefix of `loc` (pydantic error locations)."""
        key: PathKey = tuple(loc)
        while True:
            if key in self.positions:
                return self.positions[key]
            if not key:
                return None
            key = key[:-1]

    def error(self, loc: Sequence[str | int], message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError pointing at `loc` in this file."""
        position = self.position_of(loc)
        dotted = ".".join(str(part) for part in loc) or None
        return ConfigError(
            message,
            path=self.path,
            line=position[0] if position else None,
            column=position[1] if position else None,
            field=dotted,
            hint=hint,
        )


class YamlValueError(ConfigError):
    """A scalar YAML itself cannot represent (an impossible date, a huge number)."""


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _TooDeep(yaml.MarkedYAMLError):
    """The composer went deeper than `MAX_DEPTH`; the mark is where it did."""


class _DepthLimitedLoader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than `MAX_DEPTH` before it recurses further."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooDeep(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)

    def compose_sequence_node(self, anchor: Any) -> yaml.SequenceNode:
        self._enter()
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        self._enter()
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self._depth -= 1


def compose(text: str, path: str) -> yaml.Node | None:
    """The node tree of YAML text (safe loader, depth-limited); errors name `path` and the line."""
    try:
        loader = _DepthLimitedLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except _TooDeep as exc:
        mark = exc.problem_mark
        raise ConfigError(
            str(exc.problem),
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint=_DEPTH_HINT,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"not valid YAML: {exc.problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from None


def too_deep(node: yaml.Node, loc: PathKey, path: str) -> ConfigError | None:
    """The error for a value nested deeper than `MAX_DEPTH` (`loc` is its path), else None.

    The composer already refuses deep text; this catches depth reached through aliases.
    """
    if len(loc) <= MAX_DEPTH:
        return None
    line, column = _mark(node)
    return ConfigError(
        f"nested deeper than {MAX_DEPTH} levels (through aliases)",
        path=path,
        line=line,
        column=column,
        hint=_DEPTH_HINT,
    )


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[PathKey, Position] = {}
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, loc: PathKey) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise ConfigError(
                f"document expands to more than {_MAX_NODES} values (alias bomb?)",
                path=self.path,
                line=_mark(node)[0],
                hint="remove the repeated aliases (*name) from the file",
            )
        deep = too_deep(node, loc, self.path)
        if deep is not None:
            raise deep
        self.positions.setdefault(loc, _mark(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            line, column = _mark(node)
            raise ConfigError(
                f"unsupported YAML tag {node.tag}",
                path=self.path,
                line=line,
                column=column,
                hint="only plain YAML (mappings, lists, strings, numbers, dates) is accepted",
            )
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = (
                    self.constructor.construct_object(key_node, deep=True)
                    if isinstance(key_node, yaml.ScalarNode)
                    else []  # a list or mapping as a key: refused below, without building it
                )
                if not isinstance(key, str | int | bool | float) and key is not None:
                    raise ConfigError(
                        "mapping keys must be plain scalars",
                        path=self.path,
                        line=_mark(key_node)[0],
                        column=_mark(key_node)[1],
                    )
                if key in result:
                    line, column = _mark(key_node)
                    raise ConfigError(
                        f"duplicate key {key!r}",
                        path=self.path,
                        line=line,
                        column=column,
                        hint="each key may appear once in a mapping; merge or remove one",
                    )
                child: PathKey = (*loc, str(key))
                self.positions[child] = _mark(key_node)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # e.g. an impossible date such as 2026-13-01
            line, column = _mark(node)
            raise YamlValueError(
                f"invalid value {node.value!r}: {exc}", path=self.path, line=line, column=column
            ) from None


def load_text(text: str, path: str) -> YamlDocument:
    """Parse YAML text; errors name `path` and the line."""
    node = compose(text, path)
    if node is None:
        return YamlDocument(path=path, data=None)
    builder = _Builder(path)
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"unsupported YAML value: {exc.problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="only plain YAML (mappings, lists, strings, numbers, dates) is accepted",
        ) from None
    return YamlDocument(path=path, data=data, positions=builder.positions)


def load_file(path: Path) -> YamlDocument:
    """Read and parse a YAML file."""
    try:
        text = read_text(path, MAX_SETTINGS_BYTES)
    except FileNotFoundError:
        raise ConfigError(
            "file not found", path=str(path), hint="create one with `mailcrm init DIR`"
        ) from None
    except NotATextFile as exc:
        raise ConfigError(f"cannot read file: {exc}", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read file: {exc}", path=str(path)) from None
    return load_text(text, str(path))
