from __future__ import annotations

import pytest

from mailcrm.errors import ConfigError
from mailcrm.yamlfile import load_text


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
