"""The password policy: long enough, not absurdly long, not the email, not one character."""

from __future__ import annotations

import pytest

from mailcrm.domain.passwords import MAX_LENGTH, MIN_LENGTH, normalize_password, password_problem

EMAIL = "somchai.j@acme.example"


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("correct horse battery", None),
        ("x" * (MIN_LENGTH - 1) + "y", None),
        ("short", "too short"),
        ("a" * (MIN_LENGTH - 1), "too short"),
        ("รหัสผ่านยาวพอแล้ว", None),  # Thai, 17 characters
        ("a" * (MAX_LENGTH + 1), "too long"),
        ("a" * MIN_LENGTH, "repeats one character"),
        ("Somchai.J@Acme.example", "email address"),
        ("somchai.j@acme.example", "email address"),
        ("SOMCHAI.J", "too short"),
    ],
)
def test_policy(password: str, problem: str | None) -> None:
    found = password_problem(password, EMAIL)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_local_part_alone_is_refused_when_long_enough() -> None:
    found = password_problem("somchai.jaidee", "somchai.jaidee@acme.example")
    assert found is not None and "email address" in found


def test_composed_and_decomposed_text_are_one_password() -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous plai\u0302t"
    assert composed != decomposed
    assert normalize_password(composed) == normalize_password(decomposed)
    # Compatibility forms fold too: full-width letters are the ASCII ones.
    assert normalize_password("\uff41\uff42\uff43") == "abc"
