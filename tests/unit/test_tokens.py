"""API token format, what is stored of a token, how it is named, and scope checks."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from mailcrm.domain.access import Principal, Role, Scope, allows
from mailcrm.domain.tokens import (
    is_well_formed,
    new_token,
    prefix_of,
    should_record_use,
    shown,
    token_digest,
    token_state,
)

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def test_a_new_token_reads_mcrm_prefix_secret_and_only_its_digest_is_kept() -> None:
    made = new_token()
    assert re.fullmatch(r"mcrm_[a-z0-9]{8}_[A-Za-z0-9]{40}", made.text)
    assert made.prefix == made.text.split("_")[1]
    assert made.digest == hashlib.sha256(made.text.encode()).hexdigest()
    assert made.text.split("_")[2] not in made.digest
    assert is_well_formed(made.text)


def test_new_tokens_do_not_repeat() -> None:
    made = [new_token() for _ in range(200)]
    assert len({m.text for m in made}) == len({m.prefix for m in made}) == 200


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mcrm_abcd1234",
        "mcrm_abcd1234_" + "A" * 39,
        "mcrm_abcd1234_" + "A" * 41,
        "mcrm_ABCD1234_" + "A" * 40,
        "xcrm_abcd1234_" + "A" * 40,
        "mcrm_abcd1234_" + "A" * 39 + "-",
        " mcrm_abcd1234_" + "A" * 40,
        "mcrm_abcd1234_" + "A" * 40 + "\n",
    ],
)
def test_malformed_tokens_are_told_apart_before_any_lookup(text: str) -> None:
    assert not is_well_formed(text)


def test_a_token_is_named_by_its_prefix_in_any_of_the_forms_people_paste() -> None:
    token = "mcrm_abcd1234_" + "A" * 40
    assert shown("abcd1234") == "mcrm_abcd1234"
    for named in ("abcd1234", "mcrm_abcd1234", token, "  mcrm_abcd1234\n"):
        assert prefix_of(named) == "abcd1234"
    for named in ("abc", "mcrm_", "ABCD1234", "abcd12345", "'; drop table api_token; --"):
        assert prefix_of(named) is None


def test_digest_is_sha256_hex_of_the_whole_text() -> None:
    assert token_digest("mcrm_x") == hashlib.sha256(b"mcrm_x").hexdigest()


def test_token_state_revoked_beats_expired() -> None:
    assert token_state(None, None, NOW) == "active"
    assert token_state(None, NOW + timedelta(seconds=1), NOW) == "active"
    assert token_state(None, NOW, NOW) == "expired"
    assert token_state(NOW - timedelta(days=1), NOW - timedelta(hours=1), NOW) == "revoked"


def test_use_is_recorded_at_most_once_a_minute() -> None:
    assert should_record_use(None, NOW)
    assert not should_record_use(NOW - timedelta(seconds=59), NOW)
    assert should_record_use(NOW - timedelta(seconds=60), NOW)


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        (Scope.READ, Scope.READ, True),
        (Scope.READ, Scope.WRITE, False),
        (Scope.WRITE, Scope.READ, True),
        (Scope.WRITE, Scope.WRITE, True),
        (None, Scope.WRITE, True),
    ],
)
def test_write_includes_read_and_a_password_login_has_every_scope(
    granted: Scope | None, needed: Scope, allowed: bool
) -> None:
    assert allows(granted, needed) is allowed


def test_a_salesperson_is_limited_to_their_own_customers_and_an_admin_is_not() -> None:
    assert Principal(1, "a@x.example", Role.SALESPERSON, 7).owner_filter == 7
    assert Principal(2, "b@x.example", Role.ADMIN, 7).owner_filter is None
