from __future__ import annotations

from collections.abc import Callable

import pytest

from mailcrm.errors import ConfigError
from mailcrm.rules_yaml.tree import walk
from mailcrm.yamlfile import MAX_DEPTH, load_text


def test_positions_point_at_keys_and_list_items() -> None:
    doc = load_text("a: 1\nb:\n  - x: 2\n  - y: 3\n", "f.yaml")
    assert doc.data == {"a": 1, "b": [{"x": 2}, {"y": 3}]}
    assert doc.position_of(("b", 1, "y")) == (4, 5)
    assert doc.position_of(("a",)) == (1, 1)
    # An unknown deeper location falls back to its nearest known parent.
    assert doc.position_of(("b", 0, "missing")) == (3, 5)


def test_duplicate_key_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("a: 1\nb: 2\na: 3\n", "dup.yaml")
    assert "dup.yaml:3:1" in str(info.value)
    assert "duplicate key 'a'" in str(info.value)


def test_python_tags_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("x: !!python/object/apply:os.system ['true']\n", "evil.yaml")
    assert "evil.yaml:1" in str(info.value)


def test_alias_bomb_is_bounded() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        prev = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    with pytest.raises(ConfigError, match="alias bomb"):
        load_text("\n".join(lines) + "\n", "bomb.yaml")


def test_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("a: [1, 2\nb: 3\n", "broken.yaml")
    assert str(info.value).startswith("broken.yaml:")


def test_empty_document_is_none() -> None:
    assert load_text("", "empty.yaml").data is None


def test_impossible_date_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"dates.yaml:1:8: invalid value '2026-13-01'"):
        load_text("start: 2026-13-01\n", "dates.yaml")


# --- nesting: refused at the line where it passes the limit, never a RecursionError ------


def _flow_lists(depth: int) -> str:
    """`a:` then `depth` nested flow lists on one line."""
    return "a: " + "[" * depth + "]" * depth + "\n"


def _block_mappings(depth: int) -> str:
    """`depth` block mappings, each one line and two spaces deeper than its parent."""
    return "".join("  " * level + "k:\n" for level in range(depth - 1)) + "  " * (depth - 1) + "v: 1\n"


def _block_lists(depth: int) -> str:
    """A mapping holding `depth - 1` block lists, one per line."""
    return "a:\n" + "".join("  " * level + "-\n" for level in range(1, depth - 1)) + "  " * depth + "- 1\n"


def _flow_mappings(depth: int) -> str:
    return "{a: " * depth + "1" + "}" * depth + "\n"


@pytest.mark.parametrize("shape", [_flow_lists, _block_mappings, _block_lists, _flow_mappings])
@pytest.mark.parametrize("load", [load_text, walk], ids=["load_text", "rules_tree"])
def test_nesting_900_levels_deep_is_refused_with_file_and_line(
    shape: Callable[[int], str], load: Callable[[str, str], object]
) -> None:
    text = shape(900)
    with pytest.raises(ConfigError) as info:
        load(text, "deep.yaml")
    error = info.value
    assert error.path == "deep.yaml" and f"nested deeper than {MAX_DEPTH} levels" in error.message
    # Where the 65th level opens: on line 1 in flow style, on line 65 in block style.
    assert error.line == (1 if shape in (_flow_lists, _flow_mappings) else MAX_DEPTH + 1)
    assert "flatten" in str(error)


@pytest.mark.parametrize("shape", [_flow_lists, _block_mappings, _flow_mappings])
def test_nesting_up_to_the_limit_is_accepted(shape: Callable[[int], str]) -> None:
    depth = MAX_DEPTH - 1 if shape is _flow_lists else MAX_DEPTH  # `a:` is a level too
    assert load_text(shape(depth), "ok.yaml").data is not None
    with pytest.raises(ConfigError, match="nested deeper"):
        load_text(shape(depth + 1), "deep.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]\n",  # a list holding itself
        "a: &a {b: *a}\n",  # a mapping holding itself
        # Each anchor nests the previous one 40 levels deeper: 400 levels through aliases.
        "a0: &a0 1\n"
        + "".join(f"a{i}: &a{i} " + "[" * 40 + f"*a{i - 1}" + "]" * 40 + "\n" for i in range(1, 11)),
    ],
    ids=["self-list", "self-mapping", "alias-chain"],
)
@pytest.mark.parametrize("load", [load_text, walk], ids=["load_text", "rules_tree"])
def test_nesting_through_aliases_is_refused(text: str, load: Callable[[str, str], object]) -> None:
    with pytest.raises(ConfigError, match=r"aliases.yaml:\d+:\d+: nested deeper than 64 levels"):
        load(text, "aliases.yaml")
